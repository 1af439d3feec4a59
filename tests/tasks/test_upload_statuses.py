"""A file that failed in a run stays FAILED with its step and reason, whatever its sibling
steps do afterwards in the same run; a new run clears it."""

import pytest

from rf_pipelines import uploading
from rf_pipelines.catalog import db, uploads
from rf_pipelines.errors import BuildFailed, InvalidInput
from rf_pipelines.tasks import (
    DescribeBands,
    MakeFootprints,
    MakeThumbnails,
    ProcessUpload,
    RegisterUploadScene,
    WriteStacItem,
)
from rf_pipelines.tasks.runner import build
from tests import rasters

SIBLINGS = (MakeThumbnails, DescribeBands, MakeFootprints)  # each reads the COG


def _summary(database_url, upload_id):
    with db.connect(database_url) as conn:
        return uploads.upload_summary(conn, upload_id)


def test_a_step_that_fails_stops_its_file_and_keeps_it_failed_until_a_new_run(
    tmp_path, database_url, monkeypatch
):
    monkeypatch.setenv("RF_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("RF_DATABASE_URL", database_url)
    upload_id = str(uploading.create_upload([str(rasters.GEOTIFF / "byte.tif")], "statuses"))
    # The first of the three sibling steps to run fails; the file's other steps do not run
    # after it in this run (its batch stops that file at its first failure).
    failing = []
    for cls in SIBLINGS:
        monkeypatch.setattr(cls, "work", _first_one_fails(cls.work, failing))
    ran = tmp_path / "ran.txt"
    for cls in (*SIBLINGS, WriteStacItem, RegisterUploadScene):
        monkeypatch.setattr(cls, "work", _recording(cls.work, ran))

    with pytest.raises(BuildFailed) as failed:
        build([ProcessUpload(upload_id=upload_id)], local_scheduler=True)

    assert failed.value.exit_code == 3
    [step] = failing
    assert ran.read_text().split()[-1] == step  # nothing of the file ran after it
    summary = _summary(database_url, upload_id)
    [entry] = summary["files"]
    assert entry["status"] == "FAILURE", summary
    assert entry["error"] == f"{step}: InvalidInput: the corners are off the Earth"
    assert summary["status"] == "FAILED"
    assert f"byte.tif: {step}: InvalidInput" in summary["status_reason"]

    # A new run clears it: the step runs again, and now succeeds.
    for cls in SIBLINGS:
        monkeypatch.setattr(cls, "work", _unwrapped(cls.work))
    build([ProcessUpload(upload_id=upload_id)], local_scheduler=True)
    summary = _summary(database_url, upload_id)
    assert summary["status"] == "COMPLETE" and summary["files"][0]["error"] is None


def _unwrapped(work):
    while hasattr(work, "__wrapped__"):
        work = work.__wrapped__
    return work


def _first_one_fails(work, failing):
    def failing_work(self):
        if not failing:
            failing.append(self.task_family)
        if self.task_family == failing[0]:
            raise InvalidInput("the corners are off the Earth")
        return work(self)

    failing_work.__wrapped__ = work
    return failing_work


def _recording(work, ran):
    """Appends the step's family to ``ran`` as it starts (in whichever process runs it)."""

    def record(self):
        with open(ran, "a") as out:
            out.write(self.task_family + "\n")
        return work(self)

    record.__wrapped__ = work
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
