"""A local mirror of the Sentinel-2 bucket layout, built from the real tileInfo/productInfo."""

import copy
import json
from concurrent.futures import ThreadPoolExecutor

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


# 300 grid squares; with UTM zones 1, 2, ... a day of any number of distinct tiles.
SQUARES = [a + b for a in "CDEFGHJKLMNPQRSTUV" for b in "ABCDEFGHJKLMNPQRSTUV"][:300]


def tile_path(day, square, sequence=0, zone=19):
    return f"tiles/{zone}/U/{square}/{day.year}/{day.month}/{day.day}/{sequence}"


def scene_name(day, square, zone=19):
    """The name (scene key) of the L1C scene of tile ``zone``U``square`` acquired on ``day``."""
    return f"S2A_MSIL1C_{day:%Y%m%d}T153601_T{zone:02d}U{square}"


def product_name(day, square, baseline="N0205", made=None, zone=19):
    """The name of the L1C product of tile ``zone``U``square`` acquired on ``day``, processed
    under ``baseline`` at ``made`` (its discriminator; by default a few minutes after sensing)."""
    made = made or f"{day:%Y%m%d}T153557"
    return f"S2A_MSIL1C_{day:%Y%m%d}T153601_{baseline}_R111_T{zone:02d}U{square}_{made}"


def tile_info(day, square, sequence=0, baseline="N0205", made=None, zone=19):
    """The real 19UDP tileInfo.json, moved to another tile, day and baseline."""
    info = copy.deepcopy(TEMPLATE_TILE)
    info["path"] = tile_path(day, square, sequence, zone)
    info["utmZone"] = zone
    info["gridSquare"] = square
    info["timestamp"] = f"{day.isoformat()}T15:35:57.455Z"
    info["productName"] = product_name(day, square, baseline, made, zone)
    return info


def put_big_day(root, day, count, bad=()):
    """``count`` tiles acquired on ``day``, each its own scene, the ``bad`` ones (indexes)
    malformed JSON; one productInfo.json lists them all (faster to write than one product
    per tile; its name is no tile's product, so nothing is skipped as imported). Returns the
    tile paths."""
    s3 = clients.aws_client("s3", config.settings().s3_endpoint_url)
    bucket, prefix = root[len("s3://") :].split("/", 1)
    tiles = [(SQUARES[n % 300], 1 + n // 300) for n in range(count)]
    paths = [tile_path(day, square, zone=zone) for square, zone in tiles]

    def put(n):
        square, zone = tiles[n]
        body = "{broken" if n in bad else json.dumps(tile_info(day, square, zone=zone))
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{paths[n]}/tileInfo.json", Body=body)

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(put, range(count)))
    product = {"name": "P", "tiles": [{"path": p} for p in paths]}
    s3.put_object(
        Bucket=bucket,
        Key=f"{prefix}/products/{day.year}/{day.month}/{day.day}/P/productInfo.json",
        Body=json.dumps(product),
    )
    return paths


def put_json(root, key, value):
    """Writes ``value`` as JSON at ``{root}/{key}`` (root: ``s3://bucket/prefix``)."""
    s3 = clients.aws_client("s3", config.settings().s3_endpoint_url)
    bucket, prefix = root[len("s3://") :].split("/", 1)
    body = value if isinstance(value, (bytes, str)) else json.dumps(value)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=body)


def put_day(root, day, squares, baseline="N0205", made=None, sequence=0):
    """The products acquired on ``day``, one per grid square as on AWS since 2016 (each
    ``productInfo.json`` lists its one tile, at tile path ``sequence``), processed under
    ``baseline`` at ``made``; returns the tile paths."""
    for square in squares:
        info = tile_info(day, square, sequence, baseline=baseline, made=made)
        product_info = copy.deepcopy(TEMPLATE_PRODUCT)
        product_info["name"] = info["productName"]
        product_info["tiles"] = [{**TEMPLATE_PRODUCT["tiles"][0], "path": info["path"]}]
        folder = f"products/{day.year}/{day.month}/{day.day}/{info['productName']}"
        put_json(root, f"{folder}/productInfo.json", product_info)
        put_json(root, f"{info['path']}/tileInfo.json", info)
    return [tile_path(day, sq, sequence) for sq in squares]
