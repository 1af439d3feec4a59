"""Crash safety: a worker killed with SIGKILL in a batch import, luigid killed and restarted
mid-run, PostgreSQL stopped and the object store frozen for a few seconds during a run.
After a rerun: every output complete, nothing partial, no duplicate rows, no status stuck,
and the failure notification sent once. (The SIGKILL during a COG conversion is in
tests/tasks/test_upload_crash.py.)"""

import datetime
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from click.testing import CliRunner

from rf_pipelines import config, services, uploading
from rf_pipelines.catalog import db, uploads
from rf_pipelines.cli import cli
from rf_pipelines.scheduler import WORKER_DISCONNECT_DELAY_S
from tests import mirror, rasters
from tests.conftest import HOME

DAY = datetime.date(2019, 3, 4)
SQUARES = [a + b for a in "CDEFGHJKLMNPQRSTUV" for b in "ABCDEFGHJKLMNPQRSTUV"][:300]
SCENES = 1_200  # three batches


@pytest.fixture()
def big_day(s3_bucket, database_url, tmp_path, monkeypatch):
    """A day of 1,200 Sentinel-2 tiles, one of them malformed, in a mirror of its own."""
    monkeypatch.setenv("RF_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("RF_DATABASE_URL", database_url)
    root = f"s3://{s3_bucket}/crash-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("RF_SENTINEL2_ROOT", root)
    config.settings.cache_clear()
    paths = mirror.put_big_day(root, DAY, SCENES, bad=(777,))
    return {"root": root, "paths": paths, "db": database_url}


def _scene_counts(database_url):
    with db.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(DISTINCT name) FROM scenes WHERE owner = 'rf_pipelines'"
        )
        return cur.fetchone()


def _markers(database_url):
    with db.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM task_markers WHERE task_family = 'ImportBatch'")
        return cur.fetchone()[0]


def _day(database_url):
    with db.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM import_days WHERE day = %s", (DAY,))
        row = cur.fetchone()
        return row and row[0]


def _import_process(*extra):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rf_pipelines.cli",
            "import",
            "sentinel2",
            "--date",
            str(DAY),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait(check, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.05)
    raise AssertionError("timed out")


def _rerun_and_check(big_day, smtp):
    result = CliRunner().invoke(
        cli, ["import", "sentinel2", "--date", str(DAY), "--local-scheduler"]
    )
    assert result.exit_code == 3, result.output  # the malformed tile: PARTIAL
    assert _day(big_day["db"]) == "PARTIAL"
    total, distinct = _scene_counts(big_day["db"])
    assert total == distinct == SCENES - 1
    assert len(smtp.messages) == 1  # this run's failure, reported once
    assert "ImportBatch" in smtp.messages[0] and "1 of " in smtp.messages[0]


def test_sigkill_during_a_batch_import_then_rerun(big_day, smtp):
    proc = _import_process("--local-scheduler")
    try:
        _wait(lambda: _markers(big_day["db"]) >= 1, proc)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    total, distinct = _scene_counts(big_day["db"])
    assert total == distinct and total % 500 == 0 and total < SCENES  # whole batches only
    assert _day(big_day["db"]) == "RUNNING"
    assert smtp.messages == []  # the killed run reported nothing
    _rerun_and_check(big_day, smtp)


def test_a_rerun_right_after_a_kill_waits_for_luigid_and_takes_the_batch_over(big_day, smtp):
    proc = _import_process()  # through luigid
    try:
        _wait(lambda: _markers(big_day["db"]) >= 1, proc)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    # luigid still counts the dead worker's batch as running; the rerun waits until luigid
    # drops the silent worker (WORKER_DISCONNECT_DELAY_S), then imports that batch itself.
    started = time.monotonic()
    rerun = CliRunner().invoke(cli, ["import", "sentinel2", "--date", str(DAY)])
    assert rerun.exit_code == 3, rerun.output  # the malformed tile, and nothing else
    assert time.monotonic() - started < WORKER_DISCONNECT_DELAY_S + 60
    assert _day(big_day["db"]) == "PARTIAL"
    total, distinct = _scene_counts(big_day["db"])
    assert total == distinct == SCENES - 1
    assert len(smtp.messages) == 1  # one run, one notification


def test_luigid_killed_and_restarted_mid_run(big_day, smtp):
    proc = _import_process()  # through luigid
    luigid_pid = int((HOME / "services" / "luigid" / "pid").read_text())
    try:
        _wait(lambda: _markers(big_day["db"]) >= 1, proc)
        os.killpg(luigid_pid, signal.SIGKILL)
        time.sleep(2)
        _restart_luigid()
        proc.wait(300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        _restart_luigid()
    _rerun_and_check(big_day, smtp)


def _restart_luigid():
    """Starts the suite's luigid again as the session started it: it serves the task logs
    of the data root in its environment, the session's, not this test's."""
    with pytest.MonkeyPatch.context() as env:
        env.delenv("RF_DATA_ROOT", raising=False)
        services.start(HOME, ["luigid"])


def test_postgres_stopped_and_object_store_frozen_during_a_run(big_day, smtp):
    stopped = threading.Event()

    def outage():
        while _markers(big_day["db"]) < 1:
            time.sleep(0.05)
        services.stop(HOME, ["postgres"])
        time.sleep(2)
        services.start(HOME, ["postgres"])
        weed = int((HOME / "services" / "s3" / "pid").read_text())
        os.killpg(weed, signal.SIGSTOP)
        time.sleep(3)
        os.killpg(weed, signal.SIGCONT)
        stopped.set()

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    first = CliRunner().invoke(
        cli, ["import", "sentinel2", "--date", str(DAY), "--local-scheduler"]
    )
    thread.join(120)
    assert stopped.is_set()
    assert first.exit_code in (3, 75), first.output
    smtp.messages.clear()  # the first run reported its own failures
    _rerun_and_check(big_day, smtp)


def test_upload_survives_a_postgres_restart(data_root, database_url):
    upload_id = uploading.create_upload([str(rasters.GEOTIFF / "RGB.byte.tif")], "crash")

    def restart():
        time.sleep(0.5)
        services.stop(HOME, ["postgres"])
        time.sleep(1)
        services.start(HOME, ["postgres"])

    thread = threading.Thread(target=restart)
    thread.start()
    CliRunner().invoke(cli, ["upload", "process", str(upload_id), "--local-scheduler"])
    thread.join()
    CliRunner().invoke(cli, ["upload", "process", str(upload_id), "--local-scheduler"])
    with db.connect(database_url) as conn:
        summary = uploads.upload_summary(conn, upload_id)
    assert summary["status"] == "COMPLETE"
    assert [f["status"] for f in summary["files"]] == ["SUCCESS"]
