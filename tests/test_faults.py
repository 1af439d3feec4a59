"""The fault campaign (tests/faults.py) inside the suite: 20 seeded trials spread over the
four workflows and five kinds of fault, on the session's services, with no violation; and
its checks, shown to catch what they look for."""

import uuid

import pytest

from rf_pipelines.catalog import db, uploads
from rf_pipelines.catalog.statuses import UploadStatus
from tests import faults
from tests.conftest import HOME

SEED = 20261128
TRIALS = 20


@pytest.fixture()
def lab(admin_url, migrated_template, s3_bucket, tmp_path):
    lab = faults.Lab(HOME, admin_url, migrated_template, s3_bucket, tmp_path / "faults").start()
    yield lab
    lab.stop()


def test_the_suite_plan_meets_every_workflow_with_every_fault():
    plan = faults.seeds(SEED, TRIALS, list(faults.WORKFLOWS), grid=True)
    assert {(w, f) for w, f, _ in plan} == {(w, f) for w in faults.WORKFLOWS for f in faults.FAULTS}


@pytest.mark.timeout(1800)
def test_twenty_trials_leave_no_violation(lab):
    lines = []
    trials = faults.campaign(lab, TRIALS, SEED, report=lines.append, grid=True)
    table = faults.table(trials, 0)
    assert not [t for t in trials if t.violations], table
    # The faults landed: most trials hurt a running command, and every run was checked.
    assert sum(t.fired for t in trials) >= TRIALS * 3 // 4, table
    assert all(len(t.runs) >= 1 for t in trials)


def test_the_checks_see_a_row_left_claiming_work_and_a_failure_without_its_step(
    database_url, local_services
):
    upload_id = uuid.uuid4()
    with db.transaction(database_url) as conn:
        uploads.create_upload(conn, upload_id, "t", "LOCAL", [], status=UploadStatus.UPLOADED)
        uploads.add_file(conn, upload_id, "a.tif", "/a.tif", 1)
        uploads.file_started(conn, upload_id, "a.tif")
    with db.connect(database_url) as conn:
        in_flight = faults._in_flight(conn, local_services["RF_SCHEDULER_URL"])
    assert f"uploads {upload_id} in flight with no task running for it" in in_flight
    with db.transaction(database_url) as conn:
        uploads.file_failed(conn, upload_id, "a.tif", "it broke", None)
    with db.connect(database_url) as conn:
        unnamed = faults._failed_without_step(conn, faults.UploadWorkflow.steps)
    assert any(f"FAILED upload {upload_id}" in v for v in unnamed)
    assert any(f"FAILED file {upload_id}/a.tif" in v for v in unnamed)
