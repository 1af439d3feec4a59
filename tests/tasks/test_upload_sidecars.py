"""GDAL's sidecars travel with their raster and are honoured: external mask, external
overviews, PAM .aux.xml, world file with .prj. Real files from other projects' test suites
(tests/data/PROVENANCE.md), uploaded from local folders and from s3:// prefixes, onto both
kinds of data root."""

import contextlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

from rf_pipelines import clients, config, uploading
from rf_pipelines.catalog import db, uploads
from rf_pipelines.errors import BuildFailed, InvalidInput
from rf_pipelines.tasks import ProcessUpload
from rf_pipelines.tasks.runner import build
from tests import rasters

SIDECARS = Path(__file__).resolve().parents[1] / "data" / "sidecars"
MASKED = "201404_13SED190110_201404_0x1500m_CL_1_extmask.tif"


def _upload(sources, owner="sam"):
    upload_id = uploading.create_upload([str(s) for s in sources], owner)
    with contextlib.suppress(BuildFailed):  # a failed file: its row says why
        build([ProcessUpload(upload_id=str(upload_id))], local_scheduler=True)
    with db.connect(config.settings().database_url) as conn:
        return uploads.upload_summary(conn, upload_id)


def _cog(summary, name):
    [entry] = [f for f in summary["files"] if f["name"] == name]
    assert entry["status"] == "SUCCESS", entry["error"]
    return entry["outputs"]["cog"]


def _read(url, fn):
    from rf_pipelines.targets import files

    with files.gdal_env(url), rasterio.open(url) as dataset:
        return fn(dataset)


def _put_folder(bucket, prefix, folder):
    s3 = clients.aws_client("s3", config.settings().s3_endpoint_url)
    for path in Path(folder).iterdir():
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{path.name}", Body=path.read_bytes())
    return f"s3://{bucket}/{prefix}/"


@pytest.mark.parametrize("source", ["folder", "s3"])
def test_an_external_mask_masks_the_cog(data_root, database_url, s3_bucket, tmp_path, source):
    folder = SIDECARS / "msk"
    if source == "s3":
        folder = _put_folder(s3_bucket, f"sources-{tmp_path.name}/msk", folder)
    with rasterio.open(SIDECARS / "msk" / MASKED) as original:
        expected = original.dataset_mask()
    assert 0.02 < (expected == 0).mean() < 0.04  # the sidecar masks about 3% of the pixels

    summary = _upload([folder])

    [entry] = summary["files"]
    assert entry["sidecars"] == [f"{MASKED}.msk"]
    mask = _read(_cog(summary, MASKED), lambda d: d.dataset_mask())
    assert np.array_equal(mask, expected)


def test_a_mask_beside_a_file_named_alone_travels_with_it(data_root, database_url):
    summary = _upload([SIDECARS / "msk" / MASKED])
    mask = _read(_cog(summary, MASKED), lambda d: d.dataset_mask())
    assert (mask == 0).mean() > 0.02


def test_external_overviews_are_used_as_they_are(data_root, database_url):
    # The sample's overview is yellow while its full resolution is red: a decimated read
    # of the COG shows which one the COG kept.
    summary = _upload([SIDECARS / "ovr"])

    def overview_colour(dataset):
        assert dataset.overviews(1) == [2]
        return [round(float(b.mean()), 1) for b in dataset.read(out_shape=(3, 50, 50))]

    assert _read(_cog(summary, "red_square.tif"), overview_colour) == [47.1, 47.1, 0.0]


def test_an_aux_xml_gives_the_georeferencing_the_tiff_lacks(data_root, database_url):
    summary = _upload([SIDECARS / "aux"])

    def grid(dataset):
        return dataset.crs, dataset.transform

    crs, transform = _read(_cog(summary, "s2_13bands_wld.tif"), grid)
    assert crs == CRS.from_epsg(32632)
    assert transform.c == 699960 and transform.f == 5400000
    assert transform.a == pytest.approx(2195.8769230769)


def test_a_world_file_and_its_prj_georeference_the_tiff(data_root, database_url):
    summary = _upload([SIDECARS / "world"])
    [entry] = summary["files"]
    assert sorted(entry["sidecars"]) == ["no_crs_no_envelope.prj", "no_crs_no_envelope.tfw"]

    def grid(dataset):
        return dataset.crs, dataset.transform, dataset.read(1)

    crs, transform, pixels = _read(_cog(summary, "no_crs_no_envelope.tif"), grid)
    assert crs == CRS.from_epsg(32632)
    assert (transform.a, transform.e) == pytest.approx((510.6666666667, -724))
    assert (transform.c, transform.f) == pytest.approx((656201.479, 4737610.730), abs=1e-3)
    with rasterio.open(SIDECARS / "world" / "no_crs_no_envelope.tif") as original:
        assert np.array_equal(pixels, original.read(1))  # the same grid: nothing resampled


def test_a_prj_that_is_no_crs_fails_its_file_naming_it(data_root, database_url, tmp_path):
    folder = tmp_path / "badprj"
    shutil.copytree(SIDECARS / "world", folder)
    (folder / "no_crs_no_envelope.prj").write_text("PROJCS[not a crs at all")
    summary = _upload([folder])
    [entry] = summary["files"]
    assert entry["status"] == "FAILURE"
    assert entry["error"].startswith("ValidateUploadFile: InvalidInput: no_crs_no_envelope.prj:")
    assert "not a CRS GDAL can read" in entry["error"]


def test_a_sidecar_without_its_raster_is_left_out_with_a_note(data_root, database_url, tmp_path):
    folder = tmp_path / "orphans"
    folder.mkdir()
    rasters.utm_tif(folder / "kept.tif")
    shutil.copy(SIDECARS / "msk" / f"{MASKED}.msk", folder / "gone.tif.msk")
    (folder / "gone.tfw").write_text("1\n0\n0\n-1\n0\n0\n")

    summary = _upload([folder])

    assert summary["status"] == "COMPLETE"
    assert [f["name"] for f in summary["files"]] == ["kept.tif"]
    assert summary["files"][0]["sidecars"] == []
    assert sorted(n.split(":")[0] for n in summary["notes"]) == ["gone.tfw", "gone.tif.msk"]
    assert all("raster is not in the upload; ignored" in n for n in summary["notes"])


def test_sidecar_names_obey_the_rules_of_raster_names(data_root, database_url, tmp_path):
    folder = tmp_path / "long"
    folder.mkdir()
    name = "a" * (uploading.MAX_NAME_LENGTH - 4) + ".tif"  # just within the limit
    rasters.utm_tif(folder / name)
    (folder / f"{name}.aux.xml").write_text("<PAMDataset/>")  # 8 characters too long
    with pytest.raises(InvalidInput, match=r"\.tif\.aux\.xml' is not a plain file name"):
        uploading.create_upload([str(folder)], "tess")


def test_replacing_a_file_drops_the_old_files_sidecars(data_root, database_url, tmp_path):
    folder = tmp_path / "masked"
    shutil.copytree(SIDECARS / "msk", folder)
    shutil.copy(rasters.GEOTIFF / "odd" / "corrupt.tif", folder / "corrupt.tif")
    summary = _upload([folder])  # FAILED for the corrupt file: its files may be replaced
    assert summary["status"] == "FAILED"
    upload_id = summary["id"]
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(SIDECARS / "msk" / MASKED, plain / MASKED)  # the same pixels, no mask

    uploading.replace_file(upload_id, str(plain / MASKED))
    with contextlib.suppress(BuildFailed):  # the corrupt file fails again
        build([ProcessUpload(upload_id=upload_id)], local_scheduler=True)

    with db.connect(database_url) as conn:
        summary = uploads.upload_summary(conn, upload_id)
    [entry] = [f for f in summary["files"] if f["name"] == MASKED]
    assert entry["sidecars"] == []
    mask = _read(_cog(summary, MASKED), lambda d: d.dataset_mask())
    assert (mask == 0).mean() == 0  # the old mask no longer applies

    # Replaced again by a file with its mask beside it: the mask comes with it.
    uploading.replace_file(upload_id, str(SIDECARS / "msk" / MASKED))
    with contextlib.suppress(BuildFailed):
        build([ProcessUpload(upload_id=upload_id)], local_scheduler=True)
    with db.connect(database_url) as conn:
        summary = uploads.upload_summary(conn, upload_id)
    [entry] = [f for f in summary["files"] if f["name"] == MASKED]
    assert entry["sidecars"] == [f"{MASKED}.msk"]
    mask = _read(_cog(summary, MASKED), lambda d: d.dataset_mask())
    assert 0.02 < (mask == 0).mean() < 0.04


def test_an_s3_object_named_alone_brings_its_world_file_and_prj(
    data_root, database_url, s3_bucket, tmp_path
):
    prefix = _put_folder(s3_bucket, f"alone-{tmp_path.name}/world", SIDECARS / "world")
    summary = _upload([prefix + "no_crs_no_envelope.tif"])
    [entry] = summary["files"]
    assert sorted(entry["sidecars"]) == ["no_crs_no_envelope.prj", "no_crs_no_envelope.tfw"]
    crs = _read(_cog(summary, "no_crs_no_envelope.tif"), lambda d: d.crs)
    assert crs == CRS.from_epsg(32632)


def test_a_sidecar_named_in_other_case_is_stored_where_gdal_looks(
    data_root, database_url, tmp_path
):
    folder = tmp_path / "case"
    folder.mkdir()
    shutil.copy(SIDECARS / "msk" / MASKED, folder / MASKED)
    shutil.copy(SIDECARS / "msk" / f"{MASKED}.msk", folder / f"{MASKED[:-4]}.TIF.MSK")
    summary = _upload([folder])
    [entry] = summary["files"]
    assert entry["sidecars"] == [f"{MASKED}.msk"]
    mask = _read(_cog(summary, MASKED), lambda d: d.dataset_mask())
    assert 0.02 < (mask == 0).mean() < 0.04


def test_sidecars_match_their_raster_in_any_case():
    from rf_pipelines.imagery import sidecars

    urls = [
        "s3://b/f/Scene_A.TIF",
        "s3://b/f/Scene_A.TIF.msk",
        "s3://b/f/scene_a.tif.OVR",
        "s3://b/f/SCENE_A.TFW",
        "s3://b/f/Scene_A.tif.msk.ovr",
        "s3://b/g/Scene_A.TIF.aux.xml",  # another folder: not this raster's
    ]
    rasters, orphans = sidecars.match(urls, lambda u: u.lower().endswith(".tif"))
    assert rasters == {"s3://b/f/Scene_A.TIF": urls[1:5]}
    assert orphans == ["s3://b/g/Scene_A.TIF.aux.xml"]
    names = [sidecars.name_for("Scene_A.TIF", u.rsplit("/", 1)[1]) for u in urls[1:5]]
    assert names == ["Scene_A.TIF.msk", "Scene_A.TIF.ovr", "Scene_A.tfw", "Scene_A.TIF.msk.ovr"]
