"""Uploads of many files run in batches: a bounded number of luigid tasks, a pool of
processes per batch, one bad file failing alone, and a kill in mid-batch picked up where it
stopped."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request

import pytest

from rf_pipelines import uploading
from rf_pipelines.catalog import db, rows, uploads
from rf_pipelines.config import scheduler_url
from rf_pipelines.errors import BuildFailed
from rf_pipelines.tasks import ProcessUpload, UploadBatch
from rf_pipelines.tasks import uploads as upload_tasks
from rf_pipelines.tasks.runner import build
from tests import rasters

GEOTIFF = rasters.GEOTIFF


def _folder(path, count):
    path.mkdir()
    for i in range(count):
        rasters.utm_tif(path / f"tile_{i:03d}.tif", size=48 + i)
    return path


def _count_work(monkeypatch, step, record):
    """Appends the file's name to ``record`` each time ``step``'s work runs, in any process
    of the batch's pool (they are forked from this one)."""
    original = step.work

    def work(self):
        with open(record, "a") as out:
            out.write(self.filename + "\n")
        return original(self)

    monkeypatch.setattr(step, "work", work)


def _runs_of(record):
    return sorted(record.read_text().split()) if record.exists() else []


def _summary(database_url, upload_id):
    with db.connect(database_url) as conn:
        return uploads.upload_summary(conn, upload_id)


def _luigid_tasks(upload_id):
    """The tasks luigid holds for this upload, in any state."""
    found = {}
    for status in ("DONE", "FAILED", "PENDING", "RUNNING"):
        query = urllib.parse.quote(json.dumps({"status": status}))
        with urllib.request.urlopen(f"{scheduler_url()}/api/task_list?data={query}") as resp:
            tasks = json.loads(resp.read())["response"]
        found.update(
            {k: t for k, t in tasks.items() if t["params"].get("upload_id") == str(upload_id)}
        )
    return found


@pytest.mark.parametrize("count", [1, 7, 99, 100, 101, 9_999, 10_000, 10_001, 250_000])
def test_batch_sizes_keep_the_task_count_bounded_and_cover_every_file(count):
    size = upload_tasks.batch_size(count)
    batches = -(-count // size)
    assert size >= upload_tasks.BATCH_FILES
    assert batches <= upload_tasks.MAX_BATCHES
    assert batches * size >= count > (batches - 1) * size


def test_one_bad_file_among_many_fails_alone_with_its_step(
    data_root, database_url, tmp_path, monkeypatch
):
    monkeypatch.setattr(upload_tasks, "BATCH_FILES", 4)
    monkeypatch.setattr(upload_tasks, "MAX_BATCHES", 3)
    folder = _folder(tmp_path / "many", 12)
    shutil.copy(GEOTIFF / "odd" / "corrupt.tif", folder / "tile_005b.tif")
    record = tmp_path / "cog-runs.txt"
    _count_work(monkeypatch, upload_tasks.ConvertToCog, record)
    upload_id = uploading.create_upload([str(folder)], "gus")

    with pytest.raises(BuildFailed) as err:
        build([ProcessUpload(upload_id=str(upload_id))], local_scheduler=False)

    # One line, for the bad file's step, as if it had been a task of its own.
    assert err.value.exit_code == 3
    [line] = err.value.lines
    assert line.startswith("ConvertToCog(") and "filename=tile_005b.tif" in line
    assert "corrupt or unreadable pixels" in line and "UploadBatch" in line.split("(log: ")[1]
    summary = _summary(database_url, upload_id)
    by_name = {f["name"]: f for f in summary["files"]}
    assert by_name.pop("tile_005b.tif")["error"].startswith(
        "ConvertToCog: InvalidInput: tile_005b.tif: corrupt or unreadable pixels"
    )
    assert {f["status"] for f in by_name.values()} == {"SUCCESS"} and len(by_name) == 12
    assert summary["status"] == "FAILED"
    assert summary["status_reason"].startswith("1 of 13 files failed: tile_005b.tif: ")
    # 13 files in batches of 5: three batch tasks and the upload's, not 7 tasks per file.
    families = sorted(t["name"] for t in _luigid_tasks(upload_id).values())
    assert families == ["ProcessUpload", "UploadBatch", "UploadBatch", "UploadBatch"]
    assert _runs_of(record) == sorted([f"tile_{i:03d}.tif" for i in range(12)] + ["tile_005b.tif"])

    # A rerun tries the bad file again and leaves every good file alone.
    with pytest.raises(BuildFailed):
        build([ProcessUpload(upload_id=str(upload_id))], local_scheduler=False)
    assert _runs_of(record).count("tile_005b.tif") == 2 and len(_runs_of(record)) == 14
    with db.connect(database_url) as conn:
        assert rows.count(conn, "scenes", upload_id=upload_id) == 12


def test_luigid_shows_each_batch_with_its_files_done(data_root, database_url, tmp_path):
    folder = _folder(tmp_path / "few", 3)
    upload_id = uploading.create_upload([str(folder)], "hal")
    build([ProcessUpload(upload_id=str(upload_id))], local_scheduler=False)
    [batch] = [t for t in _luigid_tasks(upload_id).values() if t["name"] == "UploadBatch"]
    assert batch["status_message"] == f"upload {upload_id} batch 1/1: 3 of 3 files done"
    assert batch["progress_percentage"] == 100
    assert batch["tracking_url"].endswith(".log") and "/logs/" in batch["tracking_url"]


def test_a_kill_in_mid_batch_is_picked_up_where_it_stopped(
    data_root, database_url, tmp_path, monkeypatch
):
    """SIGKILL to the worker alone (not its group): its pool's processes die with it, and
    the rerun redoes only the files that were not registered."""
    folder = _folder(tmp_path / "slow", 8)
    upload_id = str(uploading.create_upload([str(folder)], "ida"))
    fired = tmp_path / "fired"
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.fault_cli", "DescribeBands", "sleep=1", "--"]
        + ["upload", "process", upload_id, "--local-scheduler"],
        env={**os.environ, "RF_FAULT_FIRED": str(fired)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        done_before = _wait_for_files_done(worker, database_url, upload_id, at_least=3)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        _wait_for_group_gone(worker.pid)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    summary = _summary(database_url, upload_id)
    assert summary["status"] == "PROCESSING" and len(done_before) < 8

    record = tmp_path / "register-runs.txt"
    _count_work(monkeypatch, upload_tasks.RegisterUploadScene, record)
    build([ProcessUpload(upload_id=upload_id)], local_scheduler=True)

    summary = _summary(database_url, upload_id)
    assert summary["status"] == "COMPLETE"
    done_now = {f["name"] for f in summary["files"] if f["status"] == "SUCCESS"}
    assert len(done_now) == 8
    redone = set(_runs_of(record))
    assert redone and not redone & done_before
    with db.connect(database_url) as conn:
        assert rows.count(conn, "scenes", upload_id=upload_id) == 8
        assert rows.count(conn, "upload_files", upload_id=upload_id, status="PROCESSING") == 0


def _wait_for_files_done(worker, database_url, upload_id, at_least, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.poll() is None, "the worker ended before it was killed"
        files = _summary(database_url, upload_id)["files"]
        done = {f["name"] for f in files if f["status"] == "SUCCESS"}
        if len(done) >= at_least:
            return done
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} files were done in {timeout}s")


def _wait_for_group_gone(group, timeout=10):
    """Waits until no process of the killed worker's session is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError("the pool's processes outlived their killed parent")


def test_a_pool_forked_after_gdal_used_its_threads_does_not_hang(data_root, database_url, tmp_path):
    """GDAL's thread pool does not survive a fork: the batch's processes must not use it
    even when the parent did (a listener that converted a big file before, say)."""
    folder = _folder(tmp_path / "after", 3)
    upload_id = uploading.create_upload([str(folder)], "jo")
    script = textwrap.dedent(
        f"""
        import numpy, rasterio
        from rf_pipelines.imagery import cog
        from rf_pipelines.tasks import ProcessUpload
        from rf_pipelines.tasks.runner import build
        from tests import rasters

        big = rasters.write_tif(
            {str(tmp_path / "big.tif")!r},
            numpy.random.default_rng(1).integers(1, 4000, (3, 2048, 2048), dtype="uint16"),
            crs="EPSG:32618",
            transform=rasters.from_origin(500000, 2700000, 10, 10),
        )
        with rasterio.open(big) as src:
            cog.write_cog(src, {str(tmp_path / "big_cog.tif")!r})  # all of GDAL's threads
        build([ProcessUpload(upload_id="{upload_id}")], local_scheduler=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _summary(database_url, upload_id)["status"] == "COMPLETE"


def test_a_forked_child_makes_its_own_boto3_clients(s3_bucket):
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from rf_pipelines import clients, config

    clients.aws_client("s3", config.settings().s3_endpoint_url)
    assert clients.aws_client.cache_info().currsize >= 1
    with ProcessPoolExecutor(1, mp_context=get_context("fork")) as pool:
        assert pool.submit(_cached_clients).result() == 0


def _cached_clients():
    from rf_pipelines import clients

    return clients.aws_client.cache_info().currsize


def test_each_file_is_in_exactly_one_batch(database_url, data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(upload_tasks, "BATCH_FILES", 3)
    folder = _folder(tmp_path / "ten", 10)
    upload_id = str(uploading.create_upload([str(folder)], "kim"))
    batches = ProcessUpload(upload_id=upload_id).requires()
    assert [b.batch for b in batches] == [0, 1, 2, 3]
    names = [n for b in batches for n in b.filenames()[0]]
    assert sorted(names) == [f"tile_{i:03d}.tif" for i in range(10)] == names
    assert all(isinstance(b, UploadBatch) for b in batches)


def test_a_scratch_disk_without_room_fails_the_file_before_anything_is_written(
    data_root, database_url, tmp_path, monkeypatch
):
    import shutil as shutil_module

    from rf_pipelines import config
    from rf_pipelines.targets import files

    scratch = tmp_path / "scratch"
    monkeypatch.setenv("RF_SCRATCH_DIR", str(scratch))
    config.settings.cache_clear()
    folder = _folder(tmp_path / "full", 2)
    upload_id = uploading.create_upload([str(folder)], "lou")
    usage = shutil_module.disk_usage
    # The disk is full (the measurement is faked: no test may fill the machine's disk).
    monkeypatch.setattr(shutil_module, "disk_usage", lambda p: usage(p)._replace(free=1000))

    with pytest.raises(BuildFailed) as err:
        build([ProcessUpload(upload_id=str(upload_id))], local_scheduler=True)

    assert err.value.exit_code == 2  # a setting to fix, not a bad file
    summary = _summary(database_url, upload_id)
    where = f"{scratch} (RF_SCRATCH_DIR)" if data_root.startswith("s3://") else data_root
    for entry in summary["files"]:
        assert entry["status"] == "FAILURE"
        assert entry["error"].startswith(f"ConvertToCog: NoRoom: COG of {entry['name']}: {where}")
        assert re.search(r"has 1\.0 kB free and this needs about [\d.]+ kB;", entry["error"])
        assert "RF_SCRATCH_DIR" in entry["error"]
        cog = upload_tasks.ConvertToCog(upload_id=str(upload_id), filename=entry["name"])
        assert not cog.output().exists()
    written = [p for p in scratch.rglob("*") if p.is_file() and ".rf-room" not in p.name]
    assert not written  # nothing staged or written, only the ledger of reservations
    assert files.scratch_dir() == str(scratch)


def test_a_service_still_away_after_the_retries_stops_the_batch_for_a_later_run(
    data_root, database_url, tmp_path, monkeypatch
):
    from rf_pipelines.errors import RETRY_LATER, ServiceUnavailable

    monkeypatch.setenv("RF_UPLOAD_PROCESSES", "1")
    folder = _folder(tmp_path / "outage", 8)
    upload_id = str(uploading.create_upload([str(folder)], "max"))
    original = upload_tasks.ValidateUploadFile.work

    def away(self):
        if self.filename == "tile_000.tif":
            raise ServiceUnavailable("database 127.0.0.1: connection refused")
        return original(self)

    monkeypatch.setattr(upload_tasks.ValidateUploadFile, "work", away)

    with pytest.raises(BuildFailed) as err:
        build([ProcessUpload(upload_id=upload_id)], local_scheduler=False)

    assert err.value.exit_code == RETRY_LATER
    summary = _summary(database_url, upload_id)
    assert summary["status"] == "UPLOADED"  # put back: nothing claims it
    statuses = {f["name"]: f["status"] for f in summary["files"]}
    assert statuses.pop("tile_000.tif") == "FAILURE"
    assert "QUEUED" in statuses.values()  # not started: left for the next run
    assert "PROCESSING" not in statuses.values()

    monkeypatch.setattr(upload_tasks.ValidateUploadFile, "work", original)
    build([ProcessUpload(upload_id=upload_id)], local_scheduler=False)
    assert _summary(database_url, upload_id)["status"] == "COMPLETE"


def test_a_file_that_kills_its_process_fails_alone_and_the_others_go_on(
    data_root, database_url, tmp_path, monkeypatch
):
    folder = _folder(tmp_path / "crash", 6)
    upload_id = str(uploading.create_upload([str(folder)], "ned"))
    original = upload_tasks.ConvertToCog.work

    def crash(self):
        if self.filename == "tile_002.tif":
            os.kill(os.getpid(), signal.SIGKILL)  # as GDAL's segfault or the OOM killer would
        return original(self)

    monkeypatch.setattr(upload_tasks.ConvertToCog, "work", crash)

    with pytest.raises(BuildFailed) as err:
        build([ProcessUpload(upload_id=upload_id)], local_scheduler=True)

    assert err.value.exit_code == 3
    [line] = [x for x in err.value.lines if "tile_002.tif" in x]
    assert line.startswith("ProcessDied(") and "the process working on it died" in line
    summary = _summary(database_url, upload_id)
    statuses = {f["name"]: f["status"] for f in summary["files"]}
    assert statuses.pop("tile_002.tif") == "FAILURE"
    assert set(statuses.values()) == {"SUCCESS"} and len(statuses) == 5
    [crashed] = [f for f in summary["files"] if f["name"] == "tile_002.tif"]
    assert crashed["error"].startswith("ProcessDied: ProcessDied: tile_002.tif: the process")

    # Not the file's fault after all (memory was short, say): the next run tries it again.
    monkeypatch.setattr(upload_tasks.ConvertToCog, "work", original)
    build([ProcessUpload(upload_id=upload_id)], local_scheduler=True)
    assert _summary(database_url, upload_id)["status"] == "COMPLETE"


def test_a_blip_in_the_check_of_what_is_done_is_retried(
    data_root, database_url, tmp_path, monkeypatch
):
    from rf_pipelines.errors import ServiceUnavailable

    folder = _folder(tmp_path / "blip", 3)
    upload_id = str(uploading.create_upload([str(folder)], "oz"))
    blips = tmp_path / "blips"
    original = upload_tasks.WriteStacItem.output

    class Blipping:
        """The item's target, whose first existence check (in any process) fails."""

        def __init__(self, target):
            self.target = target

        def exists(self):
            if not blips.exists():
                blips.write_text("1")
                raise ServiceUnavailable("s3 127.0.0.1: connection reset")
            return self.target.exists()

        def __getattr__(self, name):
            return getattr(self.target, name)

    monkeypatch.setattr(upload_tasks.WriteStacItem, "output", lambda t: Blipping(original(t)))
    build([ProcessUpload(upload_id=upload_id)], local_scheduler=True)
    assert blips.exists()
    assert _summary(database_url, upload_id)["status"] == "COMPLETE"


def test_luigid_is_told_the_progress_as_files_finish(
    data_root, database_url, tmp_path, monkeypatch
):
    monkeypatch.setattr(upload_tasks, "PROGRESS_EVERY_S", 0)
    messages = []
    original = UploadBatch.report_progress

    def report(self, message, percent=None):
        messages.append((message, percent))
        return original(self, message, percent)

    monkeypatch.setattr(UploadBatch, "report_progress", report)
    folder = _folder(tmp_path / "progress", 4)
    upload_id = str(uploading.create_upload([str(folder)], "pat"))
    build([ProcessUpload(upload_id=upload_id)], local_scheduler=True)
    where = f"upload {upload_id} batch 1/1"
    shown = [m for m, _ in messages]
    for done in range(5):
        assert f"{where}: {done} of 4 files done" in shown
    assert [p for _, p in messages][-1] == 100


def test_conversions_running_at_once_reserve_their_room(tmp_path, monkeypatch, settings_env):
    import shutil as shutil_module

    from rf_pipelines.errors import NoRoom
    from rf_pipelines.targets import files

    settings_env.setenv("RF_SCRATCH_DIR", str(tmp_path / "scratch"))
    scratch = str(tmp_path / "scratch")
    usage = shutil_module.disk_usage
    monkeypatch.setattr(shutil_module, "disk_usage", lambda p: usage(p)._replace(free=100_000))
    with files.room({scratch: 60_000}, "COG of a.tif"):
        with pytest.raises(NoRoom) as err:
            with files.room({scratch: 60_000}, "COG of b.tif"):
                pass
        assert str(err.value).startswith(
            f"COG of b.tif: {scratch} (RF_SCRATCH_DIR) has 100.0 kB free, 60.0 kB of it "
            "reserved by jobs running now, and this needs about 60.0 kB"
        )
    with files.room({scratch: 60_000}, "COG of b.tif"):  # a.tif is done: its room is free
        pass
    # A reservation of a process that died (killed with SIGKILL, say) holds nothing.
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "scratch" / ".rf-room").write_text(json.dumps({f"{dead.pid}-x": 90_000}))
    with files.room({scratch: 60_000}, "COG of c.tif"):
        pass


def test_two_files_registered_at_once_do_not_deadlock(
    data_root, database_url, tmp_path, monkeypatch
):
    """Two batches of one upload on two hosts register their files at the same moment: each
    transaction writes its scene (a key-share lock on the upload's row), then settles the
    upload (its update lock). Both got as far as settling, then waited for each other until
    PostgreSQL killed one ("deadlock detected"). A barrier holds each registration just
    before it settles until the other one is there too, or for 3 s."""
    import threading

    upload_id = str(
        uploading.create_upload([str(p) for p in _folder(tmp_path / "in", 2).iterdir()], "ivy")
    )
    names = [f"tile_{i:03d}.tif" for i in range(2)]
    build(
        [upload_tasks.WriteStacItem(upload_id=upload_id, filename=n) for n in names],
        local_scheduler=True,
    )
    barrier = threading.Barrier(2, timeout=3)
    original = uploads.file_succeeded

    def succeeded(*args, **kwargs):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass  # the other one waits for this one's lock: go on
        return original(*args, **kwargs)

    monkeypatch.setattr(uploads, "file_succeeded", succeeded)
    errors = []

    def register(name):
        try:
            upload_tasks.RegisterUploadScene(upload_id=upload_id, filename=name).work()
        except Exception as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=register, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert _summary(database_url, upload_id)["status"] == "COMPLETE"


def test_a_step_failing_while_a_sibling_step_starts_does_not_deadlock(
    database_url, tmp_path, settings_env
):
    """A file's failure is recorded (``file_failed``) while a sibling step of the same file
    starts (``file_started``: the upload's row, then the file's). ``file_failed`` locked the
    file's row first, then waited for the upload's: PostgreSQL killed one of the two
    ("deadlock detected"). Now both take the upload's row first: the failure waits."""
    import threading

    settings_env.setenv("RF_DATA_ROOT", str(tmp_path / "data"))
    settings_env.setenv("RF_DATABASE_URL", database_url)
    upload_id = str(
        uploading.create_upload([str(p) for p in _folder(tmp_path / "in", 1).iterdir()], "kit")
    )
    name = "tile_000.tif"
    errors = []
    with db.transaction(database_url) as starting:
        uploads.get_upload(starting, upload_id, lock=True)  # file_started's first lock

        def fail():
            try:
                with db.transaction(database_url) as conn:
                    uploads.file_failed(
                        conn, upload_id, name, "DescribeBands: boom", "DescribeBands"
                    )
            except Exception as err:  # noqa: BLE001 - collected for the assertion
                errors.append(err)

        failing = threading.Thread(target=fail)
        failing.start()
        time.sleep(1.5)  # the failure's transaction takes what it takes first, then waits
        uploads.file_started(starting, upload_id, name)  # then the file's row
    failing.join(timeout=30)
    assert not errors, errors
    summary = _summary(database_url, upload_id)
    assert summary["status"] == "FAILED"
    assert summary["files"][0]["error"] == "DescribeBands: boom"
