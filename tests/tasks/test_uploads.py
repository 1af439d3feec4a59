"""The upload workflow end to end, through the real luigid, on both data-root backends."""

import shutil

import pytest
from rio_cogeo.cogeo import cog_validate

from rf_pipelines import ids, uploading
from rf_pipelines.catalog import db, rows, scenes, uploads
from rf_pipelines.errors import BuildFailed
from rf_pipelines.targets import existing, files
from rf_pipelines.tasks import ProcessUpload
from rf_pipelines.tasks.runner import build
from tests import rasters

GEOTIFF = rasters.GEOTIFF


def _process(upload_id, local_scheduler=False):
    return build([ProcessUpload(upload_id=str(upload_id))], local_scheduler=local_scheduler)


def _summary(database_url, upload_id):
    with db.connect(database_url) as conn:
        return uploads.upload_summary(conn, upload_id)


def _bad_inputs(folder):
    """Every kind of file that cannot become a scene, with the phrase its error must hold."""
    folder.mkdir()
    (folder / "zero.tif").write_bytes(b"")
    (folder / "notes.tif").write_text("a text file with a .tif name")
    rasters.no_crs_tif(folder / "plain.tif")
    rasters.huge_header_tif(folder / "huge.tif")
    shutil.copy(GEOTIFF / "odd" / "corrupt.tif", folder / "corrupt.tif")
    shutil.copy(GEOTIFF / "odd" / "nontiff.jpg", folder / "nontiff.jpg")
    return {
        "zero.tif": "ValidateUploadFile: InvalidInput: zero.tif: the file is empty (0 bytes)",
        "notes.tif": "notes.tif: not a raster GDAL can read",
        "plain.tif": "plain.tif: has no georeferencing",
        "huge.tif": "1,000,000,000,000 pixels exceeds the limit",
        "corrupt.tif": "ConvertToCog: InvalidInput: corrupt.tif: corrupt or unreadable pixels",
        "nontiff.jpg": "nontiff.jpg: is a PNG file, not a GeoTIFF",
    }


def test_bad_files_fail_alone_and_good_files_become_scenes(data_root, database_url, tmp_path):
    expected = _bad_inputs(tmp_path / "bad")
    good = [
        GEOTIFF / "RGB.byte.tif",
        GEOTIFF / "hro" / "201404_13SED190110_201404_0x1500m_CL_1_mask.tif",
    ]
    sources = [str(p) for p in good] + [str(tmp_path / "bad" / n) for n in expected]
    upload_id = uploading.create_upload(sources, "dana", project="Bahamas")

    with pytest.raises(BuildFailed) as err:
        _process(upload_id)
    assert err.value.exit_code == 3

    summary = _summary(database_url, upload_id)
    assert summary["status"] == "FAILED"
    assert summary["status_reason"].startswith(f"{len(expected)} of {len(sources)} files failed")
    by_name = {f["name"]: f for f in summary["files"]}
    for name, phrase in expected.items():
        assert by_name[name]["status"] == "FAILURE"
        assert phrase in by_name[name]["error"], by_name[name]["error"]
        assert name in summary["status_reason"]
    for path in good:
        entry = by_name[path.name]
        assert entry["status"] == "SUCCESS" and entry["error"] is None
        _assert_registered(database_url, upload_id, path.name, entry, data_root)


def _assert_registered(database_url, upload_id, name, entry, data_root):
    scene_id = ids.scene_id_for_upload(upload_id, name)
    assert entry["scene_id"] == str(scene_id)
    with db.connect(database_url) as conn:
        scene = scenes.scene_details(conn, scene_id)
    assert scene["upload_id"] == upload_id and scene["name"] == name
    assert scene["data_footprint_4326"]["type"] in ("Polygon", "MultiPolygon")
    assert scene["tile_footprint_3857"]["type"] == "Polygon"
    assert scene["thumbnail_status"] == "SUCCESS" and len(scene["project_ids"]) == 1
    assert sorted(t["size"] for t in scene["thumbnails"]) == ["LARGE", "SMALL"]
    (image,) = scene["images"]
    assert len(image["bands"]) == 3 and image["bands"][0]["metadata"]["statistics"]
    outputs = entry["outputs"]
    urls = [outputs["cog"], outputs["stac_item"], *outputs["thumbnails"].values()]
    assert all(u.startswith(data_root) for u in urls)
    assert existing(urls) == set(urls)
    assert scene["ingest_location"] == outputs["cog"]
    with files.staged(outputs["cog"]) as local:
        assert cog_validate(local, quiet=True)[0]


def test_replacing_the_bad_file_redoes_only_that_file(
    data_root, database_url, tmp_path, monkeypatch
):
    from rf_pipelines.tasks.uploads import ConvertToCog, RegisterUploadScene

    ran = tmp_path / "ran.txt"
    for step in (ConvertToCog, RegisterUploadScene):
        monkeypatch.setattr(step, "work", _recording(step.work, ran))
    bad = tmp_path / "b.tif"
    shutil.copy(GEOTIFF / "odd" / "corrupt.tif", bad)
    upload_id = uploading.create_upload([str(GEOTIFF / "byte.tif"), str(bad)], "erin")
    with pytest.raises(BuildFailed):
        _process(upload_id)
    with db.connect(database_url) as conn:
        good_before = scenes.get_scene(conn, ids.scene_id_for_upload(upload_id, "byte.tif"))

    fixed = tmp_path / "fixed"
    fixed.mkdir()
    rasters.utm_tif(fixed / "b.tif")
    uploading.replace_file(upload_id, str(fixed / "b.tif"))
    ran.unlink()
    _process(upload_id)

    # The steps of the replaced file ran again, and none of the other file's.
    assert sorted(ran.read_text().split()) == [
        "ConvertToCog:b.tif",
        "RegisterUploadScene:b.tif",
    ]
    summary = _summary(database_url, upload_id)
    assert summary["status"] == "COMPLETE" and summary["status_reason"] is None
    with db.connect(database_url) as conn:
        good_after = scenes.get_scene(conn, good_before["id"])
        assert rows.count(conn, "scenes", upload_id=upload_id) == 2
    assert good_after["modified_at"] == good_before["modified_at"]


def _recording(work, ran):
    def record(self):
        with open(ran, "a") as out:
            out.write(f"{self.task_family}:{self.filename}\n")
        return work(self)

    return record


def test_rerun_of_a_complete_upload_does_nothing(data_root, database_url):
    upload_id = uploading.create_upload([str(GEOTIFF / "byte.tif")], "fay")
    _process(upload_id)
    assert _summary(database_url, upload_id)["status"] == "COMPLETE"
    again = _process(upload_id)
    assert "Did not run any tasks" in again.summary_text
    with db.connect(database_url) as conn:
        assert rows.count(conn, "scenes", upload_id=upload_id) == 1
        assert rows.count(conn, "thumbnails") == 2


def test_gcp_and_rotated_rasters_become_north_up_scenes(data_root, database_url, tmp_path):
    sources = [
        str(rasters.gcp_tif(tmp_path / "gcp.tif")),
        str(rasters.rotated_tif(tmp_path / "rotated.tif")),
    ]
    upload_id = uploading.create_upload(sources, "gus")
    _process(upload_id, local_scheduler=True)
    summary = _summary(database_url, upload_id)
    assert summary["status"] == "COMPLETE", summary
    import rasterio

    for entry in summary["files"]:
        with files.staged(entry["outputs"]["cog"]) as local, rasterio.open(local) as cog:
            assert cog.transform.b == 0 and cog.transform.d == 0 and cog.crs is not None


def test_forged_file_name_cannot_escape_the_upload(data_root, database_url, tmp_path):
    upload_id = uploading.create_upload([str(GEOTIFF / "byte.tif")], "hal")
    with db.transaction(database_url) as conn:
        uploads.add_file(conn, upload_id, "../../escaped.tif", "forged", 1)
    with pytest.raises(BuildFailed):
        _process(upload_id, local_scheduler=True)
    assert not list(tmp_path.parent.rglob("escaped.tif"))
    summary = _summary(database_url, upload_id)
    assert summary["status"] == "FAILED"
    assert (
        "../../escaped.tif: RejectUploadFile: InvalidInput: file name '../../escaped.tif' is "
        "not a plain file name" in (summary["status_reason"])
    )
    assert {f["name"]: f["status"] for f in summary["files"]}["byte.tif"] == "SUCCESS"
