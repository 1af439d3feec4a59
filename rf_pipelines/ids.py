"""Deterministic ids: the same source object always gets the same UUID, so reruns upsert."""

import uuid

from rf_pipelines.errors import InvalidInput

# Fixed namespace of rf_pipelines ids; changing it would re-key every row.
NAMESPACE = uuid.UUID("5f1d3c2e-8a47-4b7e-9c55-3a6c0e2b9d10")


def stable_id(kind, *key):
    """A UUID5 from a kind ("scene", "datasource", ...) and the parts of a natural key."""
    return uuid.uuid5(NAMESPACE, "\x1f".join([kind, *map(str, key)]))


def datasource_id(name):
    return stable_id("datasource", name)


def scene_id_for_product(datasource_name, product_id):
    """Scene of an imported product (a Landsat product id, a Sentinel-2 tile path)."""
    return stable_id("scene", datasource_name, product_id)


def scene_id_for_upload(upload_id, filename):
    """Scene made from one file of an upload."""
    return stable_id("scene", "upload", upload_id, filename)


def parse_uuid(value, what):
    """Validates a user-supplied id.

    Args:
        value: the id as given.
        what: its name for the message ("upload id", "scene id").

    Raises:
        InvalidInput: not a UUID.
    """
    try:
        return uuid.UUID(str(value))
    except ValueError as err:
        raise InvalidInput(f"{what} {value!r} is not a UUID") from err
