"""A local mirror of the providers' layouts, made from real metadata files shipped
with the package (rf_pipelines/sample_data/mirror/):
the Sentinel-2 bucket layout and a Landsat bucket with STAC items for a STAC API server.

The demo imports from it; the tests build the same layouts on the object store. Items for
the real Landsat MTLs are made from a real Earth Search item used as a template: its asset
layout, with the MTL's product id, time, corners and angles (``landsat_item``).
"""

import copy
import json
import posixpath
from pathlib import Path

from rf_pipelines.imagery import landsat, mtl

# Package data: present in a wheel, a non-editable install and the Docker image alike.
EXAMPLES = Path(__file__).resolve().parent / "sample_data" / "mirror"
LANDSAT_BUCKET = "s3://usgs-landsat"
LANDSAT_COLLECTION = "landsat-c2l2-sr"  # the USGS STAC API's collection id
_TEMPLATE_ITEM = "earthsearch_v1_LC08_L2SP_033032_20231008_02_T1.json"


def landsat_item(mtl_text, mtl_name, template=None):
    """A STAC item for the Landsat product of an MTL, shaped like ``template`` (an Earth Search
    Collection 2 item), with its assets under the USGS bucket's layout."""
    template = template or json.loads((EXAMPLES / _TEMPLATE_ITEM).read_text())
    flat = mtl.parse(mtl_text, mtl_name)
    record = landsat.scene_record(flat, mtl_name)
    product = record["product_id"]
    old = template["id"].split("_")
    old_product = "_".join(
        old[:4]
        + [template["properties"]["landsat:product_generated"][:10].replace("-", "")]
        + old[4:]
    )
    path, row = record["scene_metadata"]["path"], record["scene_metadata"]["row"]
    folder = (
        f"{LANDSAT_BUCKET}/collection02/level-2/standard/oli-tirs/"
        f"{product.split('_')[3][:4]}/{path:03d}/{row:03d}/{product}"
    )
    item = copy.deepcopy(template)
    item["id"] = product
    item["collection"] = LANDSAT_COLLECTION
    item["geometry"] = record["footprints"]["data"]["4326"]
    ring = item["geometry"]["coordinates"][0]
    item["bbox"] = [
        min(p[0] for p in ring),
        min(p[1] for p in ring),
        max(p[0] for p in ring),
        max(p[1] for p in ring),
    ]
    props = item["properties"]
    props.update(
        {
            "datetime": record["acquisition_date"].isoformat().replace("+00:00", "Z"),
            "eo:cloud_cover": record["cloud_cover"],
            "view:sun_azimuth": record["sun_azimuth"],
            "view:sun_elevation": record["sun_elevation"],
            "landsat:wrs_path": f"{path:03d}",
            "landsat:wrs_row": f"{row:03d}",
            "landsat:collection_category": record["scene_metadata"]["category"],
        }
    )
    for asset in item["assets"].values():
        name = posixpath.basename(asset["href"]).replace(old_product, product)
        asset["href"] = f"{folder}/{name}"
        for alternate in (asset.get("alternate") or {}).values():
            alternate["href"] = f"{folder}/{name}"
    item["links"] = [
        {"rel": "self", "href": f"{folder}/{product}_SR_stac.json", "type": "application/json"}
    ]
    return item


def landsat_mtl_key(item, name):
    """Where an MTL file of ``item`` sits in the Landsat bucket (key without the bucket)."""
    href = item["assets"]["mtl.json"]["href"]
    return posixpath.join(posixpath.dirname(href)[len(LANDSAT_BUCKET) + 1 :], name)


def build_local(folder):
    """Writes the demo mirror under ``folder``: a Sentinel-2 L1C bucket layout with the real
    19UDP tile of 2017-07-29, a Landsat bucket with the real MTLs, and the STAC items (the
    Landsat items made from the MTLs, and a real Earth Search Sentinel-2 item).

    Returns:
        dict: sentinel2_root, landsat_root, item_files, days (source -> day with scenes).
    """
    folder = Path(folder)
    s2_root = folder / "sentinel-s2-l1c"
    tile = json.loads(
        (EXAMPLES / "sentinel-s2-l1c_tiles_19_U_DP_2017_7_29_0_tileInfo.json").read_text()
    )
    product = json.loads(
        (
            EXAMPLES / "sinergise_S2B_MSIL1C_20201011T000249_N0209_R030_T55HFA_productInfo.json"
        ).read_text()
    )
    product.update(name=tile["productName"], tiles=[{**product["tiles"][0], "path": tile["path"]}])
    _write(s2_root / tile["path"] / "tileInfo.json", json.dumps(tile))
    _write(
        s2_root / "products/2017/7/29" / tile["productName"] / "productInfo.json",
        json.dumps(product),
    )

    landsat_root = folder / "usgs-landsat"
    items = []
    for name in sorted(p.name for p in EXAMPLES.glob("LC08_*_MTL.json")):
        item = landsat_item((EXAMPLES / name).read_text(), name)
        items.append(item)
        for mtl_name in (name, name.replace(".json", ".txt")):
            key = landsat_mtl_key(item, mtl_name)
            _write(landsat_root / key, (EXAMPLES / mtl_name).read_text())
    item_files = [folder / "stac" / "landsat-items.json"]
    _write(item_files[0], json.dumps({"type": "FeatureCollection", "features": items}))
    item_files.append(EXAMPLES / "earthsearch_v1_S2A_13TDE_20231008_0_L2A.json")
    return {
        "sentinel2_root": str(s2_root),
        "landsat_root": str(landsat_root),
        "item_files": item_files,
        "days": {
            "sentinel2": "2017-07-29",
            "landsat": "2020-10-31",
            "sentinel2-stac": "2023-10-08",
        },
    }


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
