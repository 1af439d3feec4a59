"""Scene records from real STAC items of each provider's vintage: Earth Search v0 (STAC
1.0.0-beta.2) and v1, Planetary Computer, and USGS's own 0.7 and 1.0.0-beta.2 items."""

import copy
import json

import pytest

from rf_pipelines.errors import InvalidInput
from rf_pipelines.imagery import mtl, stac_items
from rf_pipelines.mirror import landsat_item
from tests import stac
from tests.conftest import TESTDATA

STAC = TESTDATA / "stac"


def _item(name):
    return json.loads((STAC / name).read_text())


def _band_names(item):
    return [b["name"] for b in stac_items.scene_record(item, "x")["bands"]]


PC_LANDSAT = "planetary_computer_landsat-8-c2-l2_LC08_L2SP_045034_20220315_02_T2.json"
USGS_BETA = "usgs_LC08_L2SP_047027_20201204_20210313_02_T1_SR_stac.json"
SR_BANDS = [f"SR_B{i}" for i in range(1, 8)]


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


def test_planetary_computer_item_without_roles():
    # Planetary Computer's landsat-8-c2-l2 items of early 2022: no asset has roles. Every
    # GeoTIFF asset that describes one band is a band (the surface temperature product's
    # intermediate layers too); QA masks, ANG, MTL files and browse images are not.
    record = stac_items.scene_record(_item(PC_LANDSAT), "Landsat 8 C2")
    assert [b["name"] for b in record["bands"]] == SR_BANDS + [
        "ST_B10",
        "ST_DRAD",
        "ST_EMIS",
        "ST_EMSD",
        "ST_TRAD",
        "ST_URAD",
        "ST_ATRAN",
        "ST_CDIST",
    ]
    red, thermal = record["bands"][3], record["bands"][7]
    assert red["common_name"] == "red" and red["resolution"] == 30
    assert red["wavelength"] == [0.63, 0.67]  # centre 0.65, full width 0.04
    assert red["url"].endswith("LC08_L2SP_045034_20220315_20220322_02_T2_SR_B4.TIF")
    assert thermal["common_name"] == "lwir11" and thermal["resolution"] == 100
    assert record["scene_metadata"]["path"] == 45 and record["scene_metadata"]["row"] == 34


@pytest.mark.parametrize(
    "name",
    [USGS_BETA, "usgs_LC08_L2SP_001062_20201031_20201106_02_T2_SR_stac.json"],
    ids=["stac-1.0.0-beta.2", "stac-0.7.0"],
)
def test_usgs_items_give_bands_as_indexes_into_the_item_bands(name):
    # USGS's items (landsatlook) write an asset's band as an index into properties eo:bands:
    # "SR_B4.TIF": {"eo:bands": [3], "type": "image/vnd.stac.geotiff; cloud-optimized=true"}.
    record = stac_items.scene_record(_item(name), "Landsat 8 C2")
    assert [b["name"] for b in record["bands"]] == SR_BANDS
    red = record["bands"][3]
    assert red["common_name"] == "red" and red["wavelength"] == [0.65, 0.65]
    assert red["resolution"] == 30  # the band's gsd: the asset has none
    assert red["url"].endswith("_SR_B4.TIF") and red["number"] == 4


@pytest.mark.parametrize("name", [PC_LANDSAT, USGS_BETA], ids=["planetary-computer", "usgs"])
def test_items_without_roles_keep_their_browse_images_and_metadata_files(name):
    # Without roles, the browse images are known by their asset keys and the metadata files
    # (MTL, ANG) by their text, XML or JSON media types; HTML pages and QA masks are neither.
    item = _item(name)
    record = stac_items.scene_record(item, "Landsat 8 C2")
    assets = item["assets"]
    assert record["thumbnails"] == {
        "SMALL": assets["thumbnail"]["href"],
        "LARGE": assets["reduced_resolution_browse"]["href"],
    }
    stems = sorted(
        href.rsplit("/", 1)[-1].split("?")[0].rsplit("_", 1)[-1]
        for href in record["metadata_files"][1:]
    )
    assert stems == ["ANG.txt", "MTL.json", "MTL.txt", "MTL.xml"]


def test_jpeg2000_bands_count_and_a_geotiff_of_the_same_band_is_preferred():
    # Earth Search's sentinel-2-l1c items have only JPEG 2000 band files; its L2A items
    # have both, each band as a COG and as "-jp2".
    item = stac.s2_item()
    both = stac_items.scene_record(item, "x")["bands"]
    assert all(b["url"].endswith(".tif") for b in both)
    item["assets"] = {k: a for k, a in item["assets"].items() if not a["href"].endswith(".tif")}
    only_jp2 = stac_items.scene_record(item, "x")["bands"]
    assert [b["name"] for b in only_jp2] == [b["name"] for b in both]
    assert all(b["url"].endswith(".jp2") for b in only_jp2)


def test_band_index_outside_the_item_bands_names_the_item_and_asset():
    item = _item(USGS_BETA)
    item["assets"]["SR_B4.TIF"]["eo:bands"] = [7]  # properties eo:bands has 7 bands: 0..6
    with pytest.raises(InvalidInput, match=r"item LC08_L2SP_047027.*asset SR_B4\.TIF.*7"):
        stac_items.scene_record(item, "Landsat 8 C2", "item LC08_L2SP_047027")


def test_a_band_is_a_geotiff_by_its_media_type_or_its_name():
    item = _item(PC_LANDSAT)
    del item["assets"]["SR_B1"]["type"]  # no type, but the href ends .TIF: still a band
    item["assets"]["SR_B2"]["type"] = "text/html"  # not an image
    item["assets"]["SR_B3"]["href"] += "?st=2022-03-16&sig=abc"  # a signed URL
    del item["assets"]["SR_B3"]["type"]
    assert _band_names(item)[:6] == ["SR_B1", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "earthsearch_v0_S2B_20EPT_20250731_0_L2A.json",
            ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"],
        ),
        (
            "earthsearch_v1_LC08_L2SP_033032_20231008_02_T1.json",
            [f"OLI_B{i}" for i in range(1, 8)] + ["TIRS_B10"],
        ),
        (
            "earthsearch_v1_S2A_13TDE_20231008_0_L2A.json",
            ["blue", "coastal", "green", "nir", "nir08", "nir09", "red"]
            + ["rededge1", "rededge2", "rededge3", "swir16", "swir22"],
        ),
    ],
    ids=["v0-sentinel-s2-l2a-cogs", "v1-landsat-c2-l2", "v1-sentinel-2-l2a"],
)
def test_earth_search_items_keep_their_bands(name, expected):
    # Items with roles: only "data" assets; overviews (TCI, L2A_PVI), thumbnails, metadata,
    # the JP2 copies of the COGs, and data without a band description (AOT, SCL) are not bands.
    assert _band_names(_item(name)) == expected
