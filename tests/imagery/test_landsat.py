"""Landsat MTL parsing (C1 and C2, text and JSON) and scene records, on real USGS files."""

import pytest
from shapely.geometry import Point, shape

from rf_pipelines.errors import InvalidInput
from rf_pipelines.imagery import geometry, landsat, mtl
from tests.conftest import TESTDATA

LANDSAT = TESTDATA / "landsat"
C1_TXT = "LC08_L1TP_016037_20170813_20170814_01_RT_MTL.txt"
C1_JSON = "LC08_L1GT_178119_20180103_20180103_01_RT_MTL.json"
C2 = "LC08_L2SP_001062_20201031_20201106_02_T2_MTL"
L9_TXT = "LC09_L2SP_010065_20220129_20220131_02_T1_MTL.txt"  # as stored: no final END line


def _record(name, text=None):
    text = text if text is not None else (LANDSAT / name).read_text()
    return landsat.scene_record(mtl.parse(text, name), f"s3://usgs-landsat/x/{name}")


def test_c2_text_and_json_give_the_same_scene():
    from_text, from_json = _record(f"{C2}.txt"), _record(f"{C2}.json")
    for key in (
        "product_id",
        "scene_key",
        "datasource",
        "acquisition_date",
        "cloud_cover",
        "sun_azimuth",
        "sun_elevation",
        "footprints",
        "bands",
        "scene_metadata",
    ):
        assert from_text[key] == from_json[key], key
    assert from_json["product_id"] == "LC08_L2SP_001062_20201031_20201106_02_T2"
    assert from_json["cloud_cover"] == 99.94  # a string in the JSON
    assert from_json["scene_metadata"]["processing_level"] == "L2SP"
    assert [b["name"] for b in from_json["bands"]] == [f"B{i}" for i in range(1, 8)] + ["B10"]
    assert from_json["datasource"] == "Landsat 8 C2"


def test_c1_text_scene():
    record = _record(C1_TXT)
    assert record["datasource"] == "Landsat 8 C1"
    assert record["acquisition_date"].isoformat() == "2017-08-13T15:54:15.788464+00:00"
    assert record["scene_metadata"]["path"] == 16 and record["scene_metadata"]["row"] == 37
    assert len(record["bands"]) == 11 and record["bands"][3]["common_name"] == "red"
    footprint = shape(record["footprints"]["tile"]["4326"])
    assert footprint.contains(Point(-80.0, 33.2))
    assert record["thumbnails"]["LARGE"].endswith("_RT_thumb_large.jpg")


def test_c1_json_antarctic_scene():
    record = _record(C1_JSON)
    assert record["scene_metadata"]["row"] == 119
    assert shape(record["footprints"]["tile"]["4326"]).bounds[1] < -82


def test_real_time_and_tier_1_share_a_scene_key():
    rt = landsat.scene_key("LC08_L1TP_016037_20170813_20170814_01_RT", "x")
    t1 = landsat.scene_key("LC08_L1TP_016037_20170813_20170825_01_T1", "x")
    assert rt == t1 == "LC08_L1TP_016037_20170813_01"


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (
            lambda t: t[: t.index("  END_GROUP = PRODUCT_METADATA")],
            "GROUP PRODUCT_METADATA is not closed",
        ),
        (lambda t: t.replace("    CLOUD_COVER = 26.70\n", ""), "missing field CLOUD_COVER"),
        (
            lambda t: t.replace("CLOUD_COVER = 26.70", "CLOUD_COVER = cloudy"),
            "field CLOUD_COVER = 'cloudy' is not a number",
        ),
        (
            lambda t: t.replace("  END_GROUP = PRODUCT_METADATA", "  END_GROUP = WRONG", 1),
            "END_GROUP = WRONG does not close a group",
        ),
        (lambda t: t.replace("L1_METADATA_FILE", "SOMETHING_ELSE"), "not a Landsat MTL file"),
    ],
)
def test_malformed_mtl_names_the_file_and_the_problem(mangle, message):
    text = (LANDSAT / C1_TXT).read_text()
    with pytest.raises(InvalidInput, match=message) as err:
        _record(C1_TXT, mangle(text))
    assert str(err.value).startswith(C1_TXT)


def test_landsat_9_mtl_without_its_end_line():
    # The file ends with END_GROUP = LANDSAT_METADATA_FILE: complete, though no END follows.
    text = (LANDSAT / L9_TXT).read_text()
    assert text.rstrip().splitlines()[-1] == "END_GROUP = LANDSAT_METADATA_FILE"
    record = _record(L9_TXT)
    assert record["product_id"] == "LC09_L2SP_010065_20220129_20220131_02_T1"
    assert record["datasource"] == "Landsat 9 C2"
    assert record["acquisition_date"].isoformat() == "2022-01-29T15:28:34.396428+00:00"
    assert record["cloud_cover"] == 21.12
    assert [b["name"] for b in record["bands"]] == [f"B{i}" for i in range(1, 8)] + ["B10"]
    assert record["scene_metadata"]["path"] == 10 and record["scene_metadata"]["row"] == 65


def test_collection_1_mtl_without_its_end_line():
    # The real C1 file has its END line: the test strips it. L1_METADATA_FILE closing
    # completes the file as LANDSAT_METADATA_FILE does in Collection 2.
    text = (LANDSAT / C1_TXT).read_text()
    assert text.endswith("END_GROUP = L1_METADATA_FILE\nEND\n")
    without_end = text[: -len("END\n")]
    assert _record(C1_TXT, without_end) == _record(C1_TXT, text)


@pytest.mark.parametrize(
    ("cut_before", "group"),
    [
        ("END_GROUP = LANDSAT_METADATA_FILE", "LANDSAT_METADATA_FILE"),
        ("  END_GROUP = IMAGE_ATTRIBUTES", "IMAGE_ATTRIBUTES"),
    ],
)
def test_a_group_left_open_is_truncation(cut_before, group):
    text = (LANDSAT / L9_TXT).read_text()
    with pytest.raises(InvalidInput, match=f"GROUP {group} is not closed") as err:
        _record(L9_TXT, text[: text.index(cut_before)])
    assert str(err.value).startswith(L9_TXT)


def test_malformed_json():
    with pytest.raises(InvalidInput, match="not valid JSON"):
        _record(f"{C2}.json", '{"LANDSAT_METADATA_FILE": ')


def test_corners_across_the_antimeridian_make_two_polygons():
    ring = [(179.5, 10.0), (-179.5, 10.0), (-179.5, 9.0), (179.5, 9.0), (179.5, 10.0)]
    footprint = geometry.from_lonlat_ring(ring)["4326"]
    assert footprint["type"] == "MultiPolygon"
    bounds = [shape({"type": "Polygon", "coordinates": c}).bounds for c in footprint["coordinates"]]
    assert sorted(round(b[0], 1) for b in bounds) == [-180.0, 179.5]
