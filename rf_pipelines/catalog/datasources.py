"""Datasources: the named sources of scenes (a satellite product, a user's uploads)."""

from rf_pipelines import ids
from rf_pipelines.catalog.rows import jsonb, upsert


def upsert_datasource(conn, name, owner, visibility="PRIVATE", bands=()):
    """Creates or updates the datasource called ``name``; its id derives from the name.

    Returns:
        dict of the row.
    """
    row = {
        "id": ids.datasource_id(name),
        "name": name,
        "owner": owner,
        "visibility": visibility,
        "bands": jsonb(list(bands)),
    }
    return upsert(conn, "datasources", row)
