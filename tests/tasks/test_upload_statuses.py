"""A file that failed in a run stays FAILED with its step and reason, whatever its sibling
steps do afterwards in the same run; a new run clears it."""

import inspect

import pytest

from rf_pipelines import uploading
from rf_pipelines.catalog import db, uploads
from rf_pipelines.errors import BuildFailed, InvalidInput
from rf_pipelines.tasks import DescribeBands, MakeFootprints, MakeThumbnails, ProcessUpload
from rf_pipelines.tasks.runner import build
from tests import rasters

SIBLINGS = (MakeThumbnails, DescribeBands, MakeFootprints)  # each reads the COG


def _summary(database_url, upload_id):
    with db.connect(database_url) as conn:
        return uploads.upload_summary(conn, upload_id)


def test_a_step_that_fails_keeps_its_file_failed_while_sibling_steps_run(
    tmp_path, database_url, monkeypatch
):
    monkeypatch.setenv("RF_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("RF_DATABASE_URL", database_url)
    upload_id = str(uploading.create_upload([str(rasters.GEOTIFF / "byte.tif")], "statuses"))
    # The first of the three sibling steps to run fails (luigi's order among them varies);
    # the other two run after it in the same run.
    failing = []
    for cls in SIBLINGS:
        monkeypatch.setattr(cls, "work", _first_one_fails(cls.work, failing))
    started = []
    monkeypatch.setattr(uploads, "file_started", _recording(uploads.file_started, started))

    with pytest.raises(BuildFailed) as failed:
        build([ProcessUpload(upload_id=upload_id)], local_scheduler=True)

    assert failed.value.exit_code == 3
    [step] = failing
    after = started[started.index(step) + 1 :]
    assert sorted(after) == sorted(c.__name__ for c in SIBLINGS if c.__name__ != step), started
    summary = _summary(database_url, upload_id)
    [entry] = summary["files"]
    assert entry["status"] == "FAILURE", summary
    assert entry["error"] == f"{step}: InvalidInput: the corners are off the Earth"
    assert summary["status"] == "FAILED"
    assert f"byte.tif: {step}: InvalidInput" in summary["status_reason"]

    # A new run clears it: the step runs again, and now succeeds.
    for cls in SIBLINGS:
        monkeypatch.setattr(cls, "work", cls.work.__wrapped__)
    build([ProcessUpload(upload_id=upload_id)], local_scheduler=True)
    summary = _summary(database_url, upload_id)
    assert summary["status"] == "COMPLETE" and summary["files"][0]["error"] is None


def _first_one_fails(work, failing):
    def failing_work(self):
        if not failing:
            failing.append(self.task_family)
        if self.task_family == failing[0]:
            raise InvalidInput("the corners are off the Earth")
        return work(self)

    failing_work.__wrapped__ = work
    return failing_work


def _recording(file_started, started):
    def record(conn, upload_id, filename, *args, **kwargs):
        tasks = [f.frame.f_locals.get("self") for f in inspect.stack()[1:6]]
        started.append(next(type(t).__name__ for t in tasks if hasattr(t, "task_family")))
        return file_started(conn, upload_id, filename, *args, **kwargs)

    return record


def test_only_the_failed_step_or_one_upstream_of_it_clears_a_failure(
    tmp_path, database_url, monkeypatch
):
    """As two runs sharing an upload through luigid would call it: whichever run a sibling
    step belongs to, it leaves the failure and its reason; the failed step run again does
    not, nor does a step upstream of it (its outputs are made anew)."""
    from rf_pipelines.tasks import ConvertToCog

    monkeypatch.setenv("RF_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("RF_DATABASE_URL", database_url)
    upload_id = str(uploading.create_upload([str(rasters.GEOTIFF / "byte.tif")], "shared"))
    step = {cls.__name__: cls(upload_id=upload_id, filename="byte.tif") for cls in SIBLINGS}
    with db.transaction(database_url) as conn:
        uploads.file_started(conn, upload_id, "byte.tif")
        reason = "MakeThumbnails: InvalidInput: off the Earth"
        uploads.file_failed(conn, upload_id, "byte.tif", reason, "MakeThumbnails")
    with db.transaction(database_url) as conn:
        assert not uploads.file_started(
            conn, upload_id, "byte.tif", step["DescribeBands"].may_clear
        )
        # A second failure, of a sibling, does not replace the first.
        uploads.file_failed(conn, upload_id, "byte.tif", "DescribeBands: boom", "DescribeBands")
    summary = _summary(database_url, upload_id)
    assert (summary["status"], summary["files"][0]["error"]) == ("FAILED", reason)

    assert not step["MakeFootprints"].may_clear("MakeThumbnails")
    assert ConvertToCog(upload_id=upload_id, filename="byte.tif").may_clear("MakeThumbnails")
    with db.transaction(database_url) as conn:
        assert uploads.file_started(conn, upload_id, "byte.tif", step["MakeThumbnails"].may_clear)
    summary = _summary(database_url, upload_id)
    assert summary["status"] == "PROCESSING" and summary["files"][0]["error"] is None
