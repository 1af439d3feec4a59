"""Scene records from real STAC items: Earth Search (STAC 1.0) and USGS's own 0.7 items."""

import copy
import json

import pytest

from rf_pipelines.errors import InvalidInput
from rf_pipelines.imagery import mtl, stac_items
from rf_pipelines.mirror import landsat_item
from tests.conftest import TESTDATA

STAC = TESTDATA / "stac"


def _item(name):
    return json.loads((STAC / name).read_text())


def test_earth_search_sentinel2_item():
    record = stac_items.scene_record(
        _item("earthsearch_v1_S2A_13TDE_20231008_0_L2A.json"), "Sentinel-2 L2A"
    )
    assert record["product_id"] == record["scene_key"] == "S2A_13TDE_20231008_0_L2A"
    assert record["acquisition_date"].isoformat() == "2023-10-08T18:02:55.276000+00:00"
    assert record["cloud_cover"] == pytest.approx(0.000299)
    assert record["sun_elevation"] == pytest.approx(42.619081)
    assert record["scene_metadata"]["mgrs_tile"] == "13TDE"
    names = [b["name"] for b in record["bands"]]
    assert len(names) == len(set(names)) and "red" in names  # JP2 duplicates of COGs dropped
    red = next(b for b in record["bands"] if b["name"] == "red")
    assert red["resolution"] == 10 and red["wavelength"][0] < 0.665 < red["wavelength"][1]
    lon, lat = record["footprints"]["data"]["4326"]["coordinates"][0][0]
    assert -107 < lon < -104 and 39 < lat < 41
    assert abs(record["footprints"]["data"]["3857"]["coordinates"][0][0][0]) > 1e6
    assert record["thumbnails"]["SMALL"].endswith("thumbnail.jpg")


def test_usgs_stac_0_7_item_and_landsat_key():
    record = stac_items.scene_record(
        _item("usgs_LC08_L2SP_001062_20201031_20201106_02_T2_SR_stac.json"), "Landsat 8 C2"
    )
    assert record["scene_key"] == "LC08_L2SP_001062_20201031_02"
    assert record["acquisition_date"].date().isoformat() == "2020-10-31"
    assert record["sun_azimuth"] == pytest.approx(118.08241478)  # eo:sun_azimuth in 0.7
    assert record["scene_metadata"]["path"] == 1 and record["scene_metadata"]["row"] == 62


def test_landsat_item_completed_from_its_real_mtl():
    text = (TESTDATA / "landsat" / "LC08_L2SP_001062_20201031_20201106_02_T2_MTL.json").read_text()
    item = landsat_item(text, "LC08_L2SP_001062_20201031_20201106_02_T2_MTL.json")
    record = stac_items.scene_record(item, "Landsat C2")
    merged = stac_items.merge_landsat_mtl(
        record, mtl.parse(text, "x_MTL.json"), "s3://b/x_MTL.json"
    )
    assert merged["datasource"] == "Landsat 8 C2"
    assert [b["name"] for b in merged["bands"]][:3] == ["B1", "B2", "B3"]
    assert "s3://b/x_MTL.json" in merged["metadata_files"]
    assert merged["scene_metadata"]["category"] == "T2"
    other = (TESTDATA / "landsat" / "LC08_L2SP_005009_20150710_20200908_02_T2_MTL.json").read_text()
    with pytest.raises(InvalidInput, match="describes LC08_L2SP_005009.*not the item's"):
        stac_items.merge_landsat_mtl(record, mtl.parse(other, "o_MTL.json"), "o_MTL.json")


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda i: i.pop("geometry"), "has no geometry"),
        (lambda i: i["properties"].pop("datetime"), "has no datetime"),
        (lambda i: i["properties"].update(datetime="yesterday"), "is not ISO 8601"),
        (lambda i: i["properties"].update({"eo:cloud_cover": "lots"}), "eo:cloud_cover"),
        (lambda i: i.update(type="Collection"), "not a STAC item"),
        (lambda i: i.update(geometry={"type": "Polygon", "coordinates": [[1, 2]]}), "geometry"),
    ],
)
def test_bad_items_name_the_item_and_the_problem(mangle, message):
    item = copy.deepcopy(_item("earthsearch_v1_LC08_L2SP_033032_20231008_02_T1.json"))
    mangle(item)
    with pytest.raises(InvalidInput, match=message):
        stac_items.scene_record(item, "Landsat C2", "item LC08_L2SP_033032")
