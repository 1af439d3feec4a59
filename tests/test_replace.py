"""`upload replace` is safe: refused while the upload is processed, finished by running it
again after a crash, and the scene's stale tiles are forgotten."""

import json
import shutil
import subprocess
import sys

import pytest

from rf_pipelines import ids, uploading
from rf_pipelines.catalog import db, scenes, uploads
from rf_pipelines.catalog.statuses import IngestStatus, UploadStatus
from rf_pipelines.errors import BuildFailed
from rf_pipelines.targets import files
from rf_pipelines.tasks import ProcessUpload
from rf_pipelines.tasks.runner import build
from tests import rasters


@pytest.fixture()
def processed(tmp_path, database_url, monkeypatch):
    """A FAILED upload: byte.tif done; b.tif and c.tif failed (corrupt). b.tif has a fix."""
    monkeypatch.setenv("RF_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("RF_DATABASE_URL", database_url)
    bad = [tmp_path / "b.tif", tmp_path / "c.tif"]
    for path in bad:
        shutil.copy(rasters.GEOTIFF / "odd" / "corrupt.tif", path)
    paths = [str(rasters.GEOTIFF / "byte.tif"), *map(str, bad)]
    upload_id = str(uploading.create_upload(paths, "r"))
    with pytest.raises(BuildFailed):
        build([ProcessUpload(upload_id=upload_id)], local_scheduler=True)
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    rasters.utm_tif(fixed / "b.tif")
    return upload_id, str(fixed / "b.tif"), tmp_path / "data"


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "rf_pipelines.cli", *args], capture_output=True, text=True
    )


def _status(database_url, upload_id):
    with db.connect(database_url) as conn:
        return uploads.get_upload(conn, upload_id)


def test_replace_is_refused_while_the_upload_is_processed(processed, database_url):
    upload_id, fixed, _ = processed
    copy = uploading.upload_url(upload_id, "b.tif")
    before = files.read_bytes(copy)
    with db.transaction(database_url) as conn:
        uploads.set_upload_status(conn, upload_id, UploadStatus.PROCESSING)
    proc = _cli("upload", "replace", upload_id, fixed)
    assert proc.returncode == 7, proc.stderr
    assert proc.stderr.startswith(f"Error: upload {upload_id} is being processed")
    assert len(proc.stderr.splitlines()) == 1
    assert _status(database_url, upload_id)["upload_status"] == UploadStatus.PROCESSING
    assert files.read_bytes(copy) == before  # the file being processed is untouched


def test_a_replace_killed_midway_blocks_processing_until_it_is_run_again(
    processed, database_url, monkeypatch
):
    upload_id, fixed, root = processed

    def killed(url):
        raise RuntimeError("the process died while deleting the old outputs")

    with monkeypatch.context() as patch:
        patch.setattr(files, "remove_tree", killed)
        with pytest.raises(RuntimeError):
            uploading.replace_file(upload_id, fixed)
    assert _status(database_url, upload_id)["upload_status"] == UploadStatus.UPLOADING
    # No run may start on the half-replaced upload: the old outputs of b.tif are still there.
    proc = _cli("upload", "process", upload_id)
    assert proc.returncode == 2 and "replacing b.tif" in proc.stderr, proc.stderr
    assert "the same `upload replace` again" in proc.stderr

    uploading.replace_file(upload_id, fixed)  # the same command again finishes it
    assert not (root / "processed" / upload_id / "b.tif").exists()
    with pytest.raises(BuildFailed):  # c.tif is still corrupt
        build([ProcessUpload(upload_id=upload_id)], local_scheduler=True)
    summary = json.loads(_cli("upload", "show", upload_id).stdout)
    assert {f["name"]: f["status"] for f in summary["files"]} == {
        "b.tif": "SUCCESS",
        "byte.tif": "SUCCESS",
        "c.tif": "FAILURE",
    }


def test_replacing_forgets_the_tiles_of_the_old_file(processed, database_url):
    upload_id, fixed, root = processed
    uploading.replace_file(upload_id, fixed)
    with pytest.raises(BuildFailed):  # c.tif is still corrupt: the upload stays FAILED
        build([ProcessUpload(upload_id=upload_id)], local_scheduler=True)
    scene_id = ids.scene_id_for_upload(upload_id, "b.tif")
    tiles = files.join(str(root), "ingest", str(scene_id), "RenderTiles/v1/tiles")
    files.write_bytes(files.join(tiles, "_SUCCESS"), b"")  # as an ingest leaves them
    with db.transaction(database_url) as conn:
        scenes.start_ingest(conn, scene_id)
        scenes.set_ingested(conn, scene_id, tiles + "/{z}/{x}/{y}.png")

    uploading.replace_file(upload_id, fixed)

    with db.connect(database_url) as conn:
        scene = scenes.get_scene(conn, scene_id)
    assert scene["ingest_status"] == IngestStatus.NOTINGESTED and scene["ingest_location"] is None
    assert scene["status_reason"] == "its source file was replaced"
    assert not (root / "ingest" / str(scene_id)).exists()


def test_replace_is_refused_while_luigid_runs_a_task_of_the_upload(processed, database_url):
    """The upload may already be FAILED while the failed file's other steps still run."""
    from luigi.rpc import RemoteScheduler

    from rf_pipelines import config

    upload_id, fixed, _ = processed
    luigid = RemoteScheduler(config.scheduler_url())
    task_id = f"MakeThumbnails_test_{upload_id[:8]}"
    worker = f"replace-test-{upload_id[:8]}"
    luigid.add_task(
        worker=worker,
        task_id=task_id,
        status="RUNNING",
        family="MakeThumbnails",
        params={"upload_id": upload_id.upper(), "filename": "b.tif"},  # any spelling of it
    )
    try:
        assert _status(database_url, upload_id)["upload_status"] == UploadStatus.FAILED
        proc = _cli("upload", "replace", upload_id, fixed)
        assert proc.returncode == 7, proc.stderr
        assert "has tasks running in luigid" in proc.stderr
    finally:
        luigid.add_task(worker=worker, task_id=task_id, status="DONE", family="MakeThumbnails")
    assert _cli("upload", "replace", upload_id, fixed).returncode == 0
