"""A run through luigid that ends unfinished puts back the rows it claimed that no task works
on: nothing stays PROCESSING, INGESTING or RUNNING for nobody, and the rerun finishes."""

import uuid

import pytest

from rf_pipelines import operations, uploading
from rf_pipelines.catalog import db, imports, scenes, uploads
from rf_pipelines.errors import BuildFailed
from rf_pipelines.tasks import ProcessUpload
from rf_pipelines.tasks.imports import DiscoverDay, ImportDay
from rf_pipelines.tasks.ingest import IngestScene, SceneCog
from rf_pipelines.tasks.runner import build
from rf_pipelines.tasks.uploads import ConvertToCog, UploadFileTask
from tests import mirror, rasters
from tests.tasks.test_imports import DAY


def _unrecorded_failure(monkeypatch, cls, method="work"):
    """``cls`` fails, and its failure cannot be written (the catalog is away just then)."""

    def broken(self, *args, **kwargs):
        raise RuntimeError("the store went away")

    monkeypatch.setattr(cls, method, broken)
    monkeypatch.setattr(cls, "on_failure", lambda self, exception: str(exception))


def _upload(database_url):
    upload_id = str(uploading.create_upload([str(rasters.GEOTIFF / "byte.tif")], "release"))
    return upload_id


def _status(database_url, upload_id):
    with db.connect(database_url) as conn:
        summary = uploads.upload_summary(conn, upload_id)
    return summary["status"], summary["status_reason"], [f["status"] for f in summary["files"]]


@pytest.fixture()
def catalog(tmp_path, database_url, settings_env):
    settings_env.setenv("RF_DATA_ROOT", str(tmp_path / "data"))
    settings_env.setenv("RF_DATABASE_URL", database_url)
    return database_url


def test_an_upload_left_processing_is_put_back_and_the_rerun_finishes(catalog, monkeypatch):
    upload_id = _upload(catalog)
    with monkeypatch.context() as patch:
        _unrecorded_failure(patch, ConvertToCog)
        with pytest.raises(BuildFailed):
            build([ProcessUpload(upload_id=upload_id)])
    assert _status(catalog, upload_id) == ("UPLOADED", operations.RELEASED, ["QUEUED"])

    build([ProcessUpload(upload_id=upload_id)])
    assert _status(catalog, upload_id)[::2] == ("COMPLETE", ["SUCCESS"])


def test_in_process_nothing_is_released(catalog, monkeypatch):
    # With the in-process scheduler, what other runs do is unknown: rows stay for reap.
    upload_id = _upload(catalog)
    _unrecorded_failure(monkeypatch, ConvertToCog)
    with pytest.raises(BuildFailed):
        build([ProcessUpload(upload_id=upload_id)], local_scheduler=True)
    assert _status(catalog, upload_id) == ("PROCESSING", None, ["PROCESSING"])


def test_an_upload_another_run_works_on_is_not_released(catalog, monkeypatch):
    upload_id = _upload(catalog)
    with db.transaction(catalog) as conn:
        uploads.file_started(conn, upload_id, "byte.tif")
    monkeypatch.setattr(
        operations, "running_tasks", lambda url: [{"upload_id": upload_id, "filename": "x"}]
    )
    claims = {operations.Claim("upload", upload_id)}
    assert operations.release(catalog, "http://unused", claims) == []
    assert _status(catalog, upload_id)[0] == "PROCESSING"


def test_a_scene_left_ingesting_is_put_back(catalog, monkeypatch):
    upload_id = _upload(catalog)
    build([ProcessUpload(upload_id=upload_id)])
    with db.connect(catalog) as conn:
        scene_id = uploads.upload_summary(conn, upload_id)["files"][0]["scene_id"]
    _unrecorded_failure(monkeypatch, SceneCog, "report_progress")
    with pytest.raises(BuildFailed):
        build([IngestScene(scene_id=scene_id)])
    with db.connect(catalog) as conn:
        scene = scenes.get_scene(conn, scene_id)
    assert (scene["ingest_status"], scene["status_reason"]) == ("TOBEINGESTED", operations.RELEASED)


def test_an_import_day_left_running_is_incomplete_and_the_rerun_finishes(
    s2_bucket, database_url, monkeypatch
):
    mirror.put_day(s2_bucket, DAY, ["DP"])
    params = {"source": "sentinel2", "day": DAY, "run_day": DAY}
    with monkeypatch.context() as patch:
        # The day's row is written, then the step dies before its manifest.
        _unrecorded_failure(patch, DiscoverDay, "report_progress")
        with pytest.raises(BuildFailed):
            build([ImportDay(**params)])
    with db.connect(database_url) as conn:
        assert imports.day_report(conn, "sentinel2", DAY)["status"] == "INCOMPLETE"

    build([ImportDay(**params)])
    with db.connect(database_url) as conn:
        assert imports.day_report(conn, "sentinel2", DAY)["status"] == "COMPLETE"


def test_every_claiming_step_names_its_row():
    assert UploadFileTask(upload_id="u", filename="f").claim() == operations.Claim("upload", "u")
    assert SceneCog(scene_id="s").claim() == operations.Claim("scene", "s")
    day = ImportDay(source="sentinel2", day=DAY, run_day=DAY).claim()
    assert day == operations.Claim("day", f"sentinel2 {DAY}")


def test_an_upload_released_while_a_worker_finished_it_is_settled_by_that_worker(catalog):
    # release() read luigid's list just before a live worker started the last step: the
    # upload went back to UPLOADED, then the worker's last file succeeded.
    upload_id = _upload(catalog)
    with db.transaction(catalog) as conn:
        uploads.file_started(conn, upload_id, "byte.tif")
        uploads.release(conn, upload_id, operations.RELEASED)
    with db.transaction(catalog) as conn:
        uploads.file_succeeded(conn, upload_id, "byte.tif", None, {})
    assert _status(catalog, upload_id)[::2] == ("COMPLETE", ["SUCCESS"])


def test_an_upload_without_files_is_not_settled_complete(catalog):
    # Its copy failed before any file was recorded: FAILED, and processing it changes nothing.
    upload_id = uuid.uuid4()
    with db.transaction(catalog) as conn:
        uploads.create_upload(conn, upload_id, "t", "LOCAL", [], status="UPLOADED")
        uploads.set_upload_status(conn, upload_id, "UPLOADING")
        uploads.set_upload_status(conn, upload_id, "FAILED", "the copy failed")
        assert uploads.settle(conn, upload_id) == "FAILED"
