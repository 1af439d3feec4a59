"""Sentinel-2 tileInfo.json records, on real files of the AWS buckets."""

import json

import pytest
from shapely.geometry import Point, shape

from rf_pipelines.errors import InvalidInput
from rf_pipelines.imagery import sentinel2
from tests.conftest import TESTDATA

S2 = TESTDATA / "sentinel2"
L1C = S2 / "sentinel-s2-l1c_tiles_19_U_DP_2017_7_29_0_tileInfo.json"
L2A = S2 / "sentinel-s2-l2a_tiles_19_U_DP_2017_7_29_0_tileInfo.json"


def _record(info, url="s3://sentinel-s2-l1c/tiles/19/U/DP/2017/7/29/0/tileInfo.json"):
    return sentinel2.scene_record(info, url, "s3://sentinel-s2-l1c")


def test_l1c_tile():
    record = _record(json.loads(L1C.read_text()))
    assert record["product_id"] == "S2A_MSIL1C_20170729T153601_N0205_R111_T19UDP_20170729T153557"
    assert record["scene_key"] == "S2A_MSIL1C_20170729T153601_T19UDP"
    assert record["product_rank"] == "0205/20170729T153557"
    assert record["scene_metadata"]["tile_path"] == "tiles/19/U/DP/2017/7/29/0"
    assert record["datasource"] == "Sentinel-2 L1C"
    assert record["cloud_cover"] == 24.48
    assert record["scene_metadata"]["mgrs_tile"] == "19UDP"
    tile = shape(record["footprints"]["tile"]["4326"])
    data = shape(record["footprints"]["data"]["4326"])
    assert tile.contains(Point(-69.6, 48.2))
    assert data.area < tile.area  # 62 % data coverage
    assert record["footprints"]["tile"]["3857"]["type"] == "Polygon"


def test_l2a_of_the_same_tile_and_day_is_a_scene_of_its_own_datasource():
    # The real L1C and L2A tiles of 19UDP on 2017-07-29 share their tile path.
    l1c, l2a = _record(json.loads(L1C.read_text())), _record(json.loads(L2A.read_text()))
    assert l1c["scene_metadata"]["tile_path"] == l2a["scene_metadata"]["tile_path"]
    assert l2a["scene_key"] == "S2A_MSIL2A_20170729T153601_T19UDP" != l1c["scene_key"]
    assert (l1c["datasource"], l2a["datasource"]) == ("Sentinel-2 L1C", "Sentinel-2 L2A")


def test_a_reprocessed_product_keys_the_same_scene_and_ranks_higher():
    info = json.loads(L1C.read_text())
    first = _record(info)
    info["productName"] = "S2A_MSIL1C_20170729T153601_N0500_R111_T19UDP_20230615T101010"
    again = _record(info)
    assert again["scene_key"] == first["scene_key"]
    assert again["product_rank"] > first["product_rank"]
    # A newer discriminator under the same baseline ranks higher too.
    info["productName"] = "S2A_MSIL1C_20170729T153601_N0205_R111_T19UDP_20180101T000000"
    assert again["product_rank"] > _record(info)["product_rank"] > first["product_rank"]


def test_a_product_name_of_another_form_keys_by_tile_and_time():
    info = json.loads(L1C.read_text())
    info["productName"] = "S2A_OPER_PRD_MSIL1C_PDMC_20160101T000000_R111_V20160101T153601"
    record = _record(info)
    assert record["scene_key"] == "S2_19UDP_20170729T153557"
    assert record["product_rank"] == "0000/"


@pytest.mark.parametrize(
    "folder",
    [
        "aws-l2a_S2A_OPER_MSI_L2A_TL_VGS1_20220401T110010_A035382_T34LBP",
        "sinergise_S2B_MSIL1C_20201011T000249_N0209_R030_T55HFA",
    ],
)
def test_other_real_tiles(folder):
    record = _record(json.loads((S2 / folder / "tileInfo.json").read_text()))
    assert record["acquisition_date"].tzinfo is not None
    assert shape(record["footprints"]["data"]["4326"]).is_valid


def test_unknown_crs_and_missing_fields():
    info = json.loads(L1C.read_text())
    info["tileGeometry"]["crs"]["properties"]["name"] = "urn:ogc:def:crs:EPSG:8.8.1:999999"
    with pytest.raises(InvalidInput, match="unknown CRS"):
        _record(info)
    info = json.loads(L1C.read_text())
    del info["tileGeometry"]
    with pytest.raises(InvalidInput, match="missing field tileGeometry"):
        _record(info)
    info = json.loads(L1C.read_text())
    info["timestamp"] = "yesterday"
    with pytest.raises(InvalidInput, match="timestamp 'yesterday' is not ISO 8601"):
        _record(info)


def test_both_footprints_of_a_tile_match_those_made_one_by_one():
    """Tile and data geometry are transformed in one call: each comes back as if alone."""
    from rf_pipelines.imagery import geometry

    info = json.loads(L1C.read_text())
    record = _record(info)
    crs = info["tileGeometry"]["crs"]["properties"]["name"]
    for field, key in (("tileGeometry", "tile"), ("tileDataGeometry", "data")):
        plain = {k: info[field][k] for k in ("type", "coordinates")}
        assert record["footprints"][key] == geometry.from_geojson(plain, crs, field)
    tile, data = (shape(record["footprints"][k]["4326"]) for k in ("tile", "data"))
    assert data.area < tile.area


def test_a_broken_data_geometry_is_named_not_the_tile_geometry():
    info = json.loads(L1C.read_text())
    info["tileDataGeometry"]["coordinates"][0][2] = ["east", 5000000]
    with pytest.raises(InvalidInput, match="tileDataGeometry: the geometry cannot be read"):
        _record(info)
    info = json.loads(L1C.read_text())
    info["tileDataGeometry"]["coordinates"] = [[[1, 2], 3]]
    with pytest.raises(InvalidInput, match="tileDataGeometry: the geometry cannot be read"):
        _record(info)
