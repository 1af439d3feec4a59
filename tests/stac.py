"""Items for a real STAC API server (rustac's stac-server) started by the tests, and a
Landsat bucket mirror on the local object store, made from the real metadata files."""

import contextlib
import copy
import json
import socket

from rf_pipelines import services
from rf_pipelines.mirror import landsat_item, landsat_mtl_key
from tests.conftest import TESTDATA
from tests.mirror import put_json

LANDSAT = TESTDATA / "landsat"
REAL_MTLS = {
    "2020-10-31": "LC08_L2SP_001062_20201031_20201106_02_T2_MTL",
    "2015-07-10": "LC08_L2SP_005009_20150710_20200908_02_T2_MTL",
}


def s2_item(**changes):
    """The real Earth Search Sentinel-2 item, with ``changes`` to its top level."""
    item = json.loads(
        (TESTDATA / "stac" / "earthsearch_v1_S2A_13TDE_20231008_0_L2A.json").read_text()
    )
    item.update(changes)
    return item


def real_landsat_item(day):
    """The STAC item of the real Landsat MTL acquired on ``day`` (see rf_pipelines.mirror)."""
    name = REAL_MTLS[day] + ".json"
    return landsat_item((LANDSAT / name).read_text(), name)


def put_mtl(root, item, stem=None, text=None):
    """Writes the item's MTL.json (the real file, or ``text``) into the mirror at ``root``."""
    stem = stem or REAL_MTLS[item["properties"]["datetime"][:10]]
    body = text if text is not None else (LANDSAT / f"{stem}.json").read_text()
    put_json(root, landsat_mtl_key(item, f"{item['id']}_MTL.json"), body)


def republished(item, text, processed, tier):
    """A re-publication of a Landsat product (new processing date and tier): its item and MTL."""
    old_id = item["id"]
    parts = old_id.split("_")
    new_id = "_".join(parts[:4] + [processed] + parts[5:6] + [tier])
    new_item = json.loads(json.dumps(item).replace(old_id, new_id))
    new_item["properties"]["landsat:collection_category"] = tier
    new_text = text.replace(old_id, new_id).replace(
        f'"COLLECTION_CATEGORY": "{parts[6]}"', f'"COLLECTION_CATEGORY": "{tier}"'
    )
    return new_item, new_text


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def stac_api(items, folder):
    """Serves ``items`` from a real STAC API server on a free 127.0.0.1 port."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "items.json"
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": [copy.deepcopy(i) for i in items]})
    )
    with services.stac_api([path], folder / "server", port=free_port()) as url:
        yield url
