"""A local mirror of the Sentinel-2 bucket layout, built from the real tileInfo/productInfo."""

import copy
import json

from rf_pipelines import clients, config
from tests.conftest import TESTDATA

TEMPLATE_TILE = json.loads(
    (TESTDATA / "sentinel2" / "sentinel-s2-l1c_tiles_19_U_DP_2017_7_29_0_tileInfo.json").read_text()
)
TEMPLATE_PRODUCT = json.loads(
    (
        TESTDATA
        / "sentinel2"
        / "sinergise_S2B_MSIL1C_20201011T000249_N0209_R030_T55HFA"
        / "productInfo.json"
    ).read_text()
)


def tile_path(day, square, sequence=0):
    return f"tiles/19/U/{square}/{day.year}/{day.month}/{day.day}/{sequence}"


def tile_info(day, square, sequence=0, baseline="N0205"):
    """The real 19UDP tileInfo.json, moved to another grid square, day and baseline."""
    info = copy.deepcopy(TEMPLATE_TILE)
    info["path"] = tile_path(day, square, sequence)
    info["gridSquare"] = square
    info["timestamp"] = f"{day.isoformat()}T15:35:57.455Z"
    info["productName"] = (
        f"S2A_MSIL1C_{day:%Y%m%d}T153601_{baseline}_R111_T19U{square}_{day:%Y%m%d}T153557"
    )
    return info


def put_json(root, key, value):
    """Writes ``value`` as JSON at ``{root}/{key}`` (root: ``s3://bucket/prefix``)."""
    s3 = clients.aws_client("s3", config.settings().s3_endpoint_url)
    bucket, prefix = root[len("s3://") :].split("/", 1)
    body = value if isinstance(value, (bytes, str)) else json.dumps(value)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=body)


def put_day(root, day, squares, product="P1", baseline="N0205"):
    """One product acquired on ``day`` with a tile per grid square; returns the tile paths."""
    product_name = f"S2A_MSIL1C_{day:%Y%m%d}T153601_{baseline}_R111_{product}"
    product_info = copy.deepcopy(TEMPLATE_PRODUCT)
    product_info["name"] = product_name
    product_info["tiles"] = [
        {**TEMPLATE_PRODUCT["tiles"][0], "path": tile_path(day, sq)} for sq in squares
    ]
    put_json(
        root,
        f"products/{day.year}/{day.month}/{day.day}/{product_name}/productInfo.json",
        product_info,
    )
    for square in squares:
        put_json(
            root,
            f"{tile_path(day, square)}/tileInfo.json",
            tile_info(day, square, baseline=baseline),
        )
    return [tile_path(day, sq) for sq in squares]
