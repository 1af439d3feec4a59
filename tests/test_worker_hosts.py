"""Worker hosts that share nothing but the services: two workers, each with its own RF_HOME,
RF_SCRATCH_DIR and temporary folder and the same ``s3://`` data root, luigid, PostgreSQL and
store (as two machines would), run an upload, an ingest (split by roles) and an import day
together, each task and each file's steps once; and when one is killed mid-task and its
disk is gone with it, the other finishes the work, whether it was started before or after."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime

import numpy as np
import pytest
import yaml

from rf_pipelines import config, uploading
from rf_pipelines.catalog import db, imports, rows, scenes, uploads
from rf_pipelines.operations import running_tasks
from rf_pipelines.targets import files
from rf_pipelines.tasks import ProcessUpload, UploadBatch
from rf_pipelines.tasks.runner import PATIENCE_S, scheduler_url
from tests import mirror, rasters
from tests.conftest import REPO

# luigi's worker logs "[pid N] Worker Worker(...) running   Family(params)" as it starts a
# task (shown with --verbose), "done" as it finishes it, "new requirements" when run()
# yielded dynamic requirements (run() then starts again, on whichever worker luigid gives
# the task to, once they are done) and "failed".
EVENT = re.compile(
    r"Worker\(.*?\) (running|done|new requirements|failed)\s+(\w+\(.*\))\s*$", re.MULTILINE
)
DAY = date(2024, 5, 2)
# A line of the command's log (its terminal with --verbose): "2026-01-02 03:04:05,678 INFO
# rf_pipelines.tasks.runner [pid N] waiting for ...".
RUNNER_LINE = (
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO rf_pipelines\.tasks\.runner \[pid \d+\] "
)
WAITING = re.compile(RUNNER_LINE + "waiting for tasks another worker runs", re.MULTILINE)
TAKING_OVER = re.compile(RUNNER_LINE + "taking over what no worker runs", re.MULTILINE)
# A batch's log names each step of each of its files as the step starts (RfTask's progress).
STEP = re.compile(r"\] progress: (\w+): (\S+\.tif)$", re.MULTILINE)
FILE_STEPS = {
    "ValidateUploadFile",
    "ConvertToCog",
    "DescribeBands",
    "MakeThumbnails",
    "MakeFootprints",
    "WriteStacItem",
    "RegisterUploadScene",
}


class Host:
    """One worker host: its own RF_HOME, scratch folder and temporary folder (its disk), the
    shared services and ``s3://`` data root from the test's environment."""

    def __init__(self, folder):
        folder.mkdir(parents=True)
        self.home = folder / "home"
        self.scratch = folder / "scratch"
        # Its /tmp: luigi's PySparkTask pickle, the rf-spark- archive, tempfile's users,
        # Spark's local folders and the JVM's temporary folder.
        self.tmp = folder / "tmp"
        self.output = folder / "output.log"  # the terminal, kept off its disk
        self.env = {
            **os.environ,
            "RF_HOME": str(self.home),
            "RF_SCRATCH_DIR": str(self.scratch),
            "TMPDIR": str(self.tmp),
            "SPARK_LOCAL_DIRS": str(self.tmp),
            "SPARK_SUBMIT_OPTS": f"-Djava.io.tmpdir={self.tmp}",
        }

    def start(self, *argv):
        """Starts ``rf-pipelines --verbose ARGV`` on this host, in a process group of its own
        (so that killing it kills its pool's processes and Spark, as a host's death would)."""
        self.tmp.mkdir(exist_ok=True)
        self.first = len(self.events()) if self.output.exists() else 0  # this command's on
        self.log = open(self.output, "a")  # noqa: SIM115 - closed by wait()
        self.log.write(f"\n$ rf-pipelines {' '.join(argv)}\n")
        self.log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rf_pipelines.cli", "--verbose", *argv],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started = time.monotonic()
        return self

    def wait(self, timeout=240):
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.log.close()
        self.seconds = time.monotonic() - self.started
        self.ended = datetime.now()  # local time, as the log's lines
        return self.proc.returncode

    def kill(self):
        """SIGKILL to the whole process group, then the host's disk goes with it."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.wait()
        self.wipe()

    def wipe(self):
        """The host's disk is lost (or the host replaced by a new one)."""
        shutil.rmtree(self.home)
        shutil.rmtree(self.scratch, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def gone(self):
        return not any(f.exists() for f in (self.home, self.scratch, self.tmp))

    def text(self):
        return self.output.read_text()

    def events(self):
        """(event, task id) of each task this host's runs started, finished, suspended."""
        return EVENT.findall(self.text())

    def ran(self):
        """The ids of the tasks this host's last command finished."""
        return [task for event, task in self.events()[self.first :] if event == "done"]

    def when(self, pattern, last=True):
        """The time of the first (or last) line matching ``pattern`` (group 1: asctime)."""
        found = pattern.findall(self.text())
        assert found, f"{pattern.pattern!r} not in:\n{self.text()[-3000:]}"
        return datetime.strptime(found[-1 if last else 0], "%Y-%m-%d %H:%M:%S,%f")

    def wait_for_line(self, pattern, timeout=90):
        deadline = time.monotonic() + timeout
        while not pattern.search(self.text()):
            assert self.proc.poll() is None, self.text()[-3000:]
            assert time.monotonic() < deadline, self.text()[-3000:]
            time.sleep(0.2)


@pytest.fixture()
def hosts(tmp_path, s3_bucket, database_url, settings_env):
    """Two hosts, a and b; the test process plays the user's machine (``upload create``)."""
    root = f"s3://{s3_bucket}/hosts-{uuid.uuid4().hex[:10]}"
    settings_env.setenv("RF_DATA_ROOT", root)
    settings_env.setenv("RF_DATABASE_URL", database_url)
    settings_env.setenv("RF_SENTINEL2_ROOT", f"{root}-sentinel2")
    config.settings.cache_clear()
    return Host(tmp_path / "host-a"), Host(tmp_path / "host-b")


def _both(hosts, *argv):
    """Starts the same command on both hosts at once, on fresh disks (what the hosts wrote
    locally before is gone: only the services carry work from one command to the next);
    returns their exit codes."""
    for host in hosts:
        if host.home.exists():
            host.wipe()
        host.start(*argv)
    return [host.wait() for host in hosts]


def _check_codes(hosts, codes):
    """One host ended with the work done (0); the other too, or 7, saying so, only after
    waiting for the task still running on the first for PATIENCE_S (20 s) from the end of
    its own share."""
    logs = [host.text()[-3000:] for host in hosts]
    assert 0 in codes and set(codes) <= {0, 7}, logs
    for host, code in zip(hosts, codes, strict=True):
        if code == 7:
            assert "already running on another worker" in host.text(), host.text()[-3000:]
            waited = (host.ended - host.when(WAITING)).total_seconds()
            assert waited >= PATIENCE_S, (waited, host.text()[-3000:])


def _ran_once_between(hosts):
    """The tasks each host's last command finished: each task ran to its end once in all,
    whichever host ran it, and started once, or once more each time its run() yielded
    dynamic requirements (luigid then gives it again to whichever host asks: ImportDay);
    nothing failed. Returns {host index: [task ids finished]}."""
    events = [e for host in hosts for e in host.events()[host.first :]]
    logs = f"{hosts[0].text()[-3000:]}\n{hosts[1].text()[-3000:]}"
    assert not [task for event, task in events if event == "failed"], logs
    counts = {
        kind: Counter(task for event, task in events if event == kind)
        for kind in ("running", "done", "new requirements")
    }
    twice = sorted(task for task, n in counts["done"].items() if n > 1)
    assert not twice, f"run twice: {twice}\n{logs}"
    for task, n in counts["running"].items():
        assert counts["done"][task] == 1, (task, logs)
        assert n == 1 + counts["new requirements"][task], (task, n, logs)
    dynamic = {task.split("(", 1)[0] for task in counts["new requirements"]}
    assert dynamic <= {"ImportDay"}, dynamic
    return {n: host.ran() for n, host in enumerate(hosts)}


def _today():
    return datetime.now(UTC).date().isoformat()


def _families(ran):
    return Counter(task.split("(", 1)[0] for tasks in ran.values() for task in tasks)


def _file_steps(task_id):
    """Counter of (step, file) the published log of ``task_id`` names as started."""
    url = files.join(config.settings().data_root, "logs", _today(), f"{task_id}.log")
    text = files.read_bytes(url).decode()
    assert f"running {task_id}" in text, text[-3000:]
    return Counter(STEP.findall(text))


def test_two_hosts_share_an_upload_an_ingest_and_an_import_day(hosts, tmp_path, database_url):
    a, b = hosts
    # 200 files: two batches of 100, each taking seconds, so both hosts get one.
    (tmp_path / "in").mkdir()
    paths = [str(rasters.utm_tif(tmp_path / "in" / f"f{n:03d}.tif", size=32)) for n in range(200)]
    upload_id = str(uploading.create_upload(paths, "hosts"))

    codes = _both(hosts, "upload", "process", upload_id)
    assert codes == [0, 0], [h.text()[-3000:] for h in hosts]
    ran = _ran_once_between(hosts)
    assert _families(ran) == {"UploadBatch": 2, "ProcessUpload": 1}
    # The work was split: each host ran one of the two batches.
    assert [sum(t.startswith("UploadBatch(") for t in ran[n]) for n in (0, 1)] == [1, 1]
    with db.connect(database_url) as conn:
        summary = uploads.upload_summary(conn, upload_id)
        assert summary["status"] == "COMPLETE"
        assert rows.count(conn, "scenes", upload_id=upload_id) == 200
        scene_id = str(summary["files"][0]["scene_id"])
    # Each file's steps ran once, in one batch: the batches' logs, written on their hosts,
    # are published under the data root (where luigid, given the same data root, serves
    # them from) and name each step of each file as it starts; ProcessUpload's names none.
    names = sorted(f"f{n:03d}.tif" for n in range(200))
    steps = [_file_steps(UploadBatch(upload_id=upload_id, batch=n).task_id) for n in (0, 1)]
    assert not _file_steps(ProcessUpload(upload_id=upload_id).task_id)
    assert all(n == 1 for batch in steps for n in batch.values()), steps
    assert sorted(steps[0] + steps[1]) == sorted((s, f) for s in FILE_STEPS for f in names)
    assert not {f for _, f in steps[0]} & {f for _, f in steps[1]}

    # The ingest split by roles, as the README's Roles show: host a (light) makes the scene
    # COG and, on a fresh disk, finishes the ingest; host b (spark) renders the tiles from
    # the COG a wrote to the data root.
    for host in hosts:
        host.wipe()
    assert a.start("run", "SceneCog", "--scene-id", scene_id).wait() == 0, a.text()[-3000:]
    assert [t.split("(", 1)[0] for t in a.ran()] == ["SceneCog"], a.text()[-3000:]
    a.wipe()
    b.start("run", "IngestScene", "--scene-id", scene_id, "--role", "spark")
    a.start("run", "IngestScene", "--scene-id", scene_id, "--role", "light")
    codes = [host.wait() for host in hosts]
    assert codes == [0, 0], [h.text()[-3000:] for h in hosts]
    ran = _ran_once_between(hosts)
    assert [[t.split("(", 1)[0] for t in ran[n]] for n in (0, 1)] == [
        ["IngestScene"],
        ["RenderTiles"],
    ]
    with db.connect(database_url) as conn:
        scene = scenes.get_scene(conn, scene_id)
    assert scene["ingest_status"] == "INGESTED"
    assert scene["ingest_location"].startswith("s3://")

    mirror.put_big_day(config.settings().sentinel2_root, DAY, 1200)
    codes = _both(hosts, "import", "sentinel2", "--date", DAY.isoformat())
    ran = _ran_once_between(hosts)
    # Three batches of 500, dynamic requirements of ImportDay: luigid gives them, and
    # ImportDay's second start, to whichever host asks.
    assert _families(ran) == {"DiscoverDay": 1, "ImportDay": 1, "ImportBatch": 3}
    _check_codes(hosts, codes)
    with db.connect(database_url) as conn:
        report = imports.day_report(conn, "sentinel2", DAY)
        assert (report["status"], report["discovered"]) == ("COMPLETE", 1200)
        assert len(imports.day_scenes(conn, "sentinel2", DAY)) == 1200
    assert report["manifest"].startswith("s3://")


def _big_tif(path, seed):
    data = np.random.default_rng(seed).integers(1, 4000, size=(3, 1500, 1500), dtype="uint16")
    return str(
        rasters.write_tif(
            path, data, crs="EPSG:32618", transform=rasters.from_origin(500000, 2700000, 10, 10)
        )
    )


def test_a_killed_host_leaves_its_work_to_the_other(hosts, tmp_path, database_url):
    a, b = hosts
    (tmp_path / "in").mkdir()
    paths = [_big_tif(tmp_path / "in" / f"big{n}.tif", n) for n in range(6)]
    upload_id = str(uploading.create_upload(paths, "hosts"))
    a.start("upload", "process", upload_id)
    _wait_until_running(a, database_url, upload_id)
    a.kill()  # its process group, then its RF_HOME, scratch and temporary folders
    assert a.gone()
    with db.connect(database_url) as conn:
        assert uploads.get_upload(conn, upload_id)["upload_status"] == "PROCESSING"
        done = _finished(conn, upload_id)
    assert len(done) < 6, "host a finished before it was killed: nothing was left to take over"

    # Host b finds the batch RUNNING in luigid on a worker that no longer pings. luigid lets
    # it go worker_disconnect_delay (15 s) after its last ping; b's run reads luigid's worker
    # list (which prunes dead workers) every second while it waits, as long as the holder is
    # silent, and the batch, FAILED with its worker gone, is scheduled again at once by b's
    # next pass (re-added as PENDING: luigid's retry_delay only paces keep-alive workers
    # retrying their own failures). So b waits about 15 s from a's death, then redoes only
    # the files a had not finished.
    assert b.start("upload", "process", upload_id).wait() == 0, b.text()[-3000:]
    assert 10 < b.seconds < 60, b.seconds
    assert Counter(t.split("(", 1)[0] for t in b.ran()) == {"UploadBatch": 1, "ProcessUpload": 1}
    with db.connect(database_url) as conn:
        summary = uploads.upload_summary(conn, upload_id)
        assert summary["status"] == "COMPLETE"
        assert rows.count(conn, "scenes", upload_id=upload_id) == 6
        assert rows.count(conn, "upload_files", upload_id=upload_id, status="PROCESSING") == 0
        # What host a finished (its outputs in the store, its rows) was not done again.
        assert {n: t for n, t in _finished(conn, upload_id).items() if n in done} == done
        assert sorted(_finished(conn, upload_id)) == [f"big{n}.tif" for n in range(6)]
    assert a.gone(), "something recreated the dead host's folders"


def test_a_waiting_host_takes_over_from_a_host_killed_after_its_wait_began(
    hosts, tmp_path, database_url
):
    """Host b starts the same upload while a runs its only batch: b's share is done at once
    and it waits. a is killed long enough after that for luigid to free a's batch only
    after PATIENCE_S (20 s) of b's wait: b keeps waiting while the holder is silent, takes
    the batch over and finishes the upload."""
    a, b = hosts
    a.env["RF_UPLOAD_PROCESSES"] = "1"  # one file at a time: the batch outlasts b's start
    (tmp_path / "in").mkdir()
    count = 14  # about 1.5 s each, one at a time: 20 s of work, killed 10 to 15 s in
    paths = [_big_tif(tmp_path / "in" / f"big{n}.tif", n) for n in range(count)]
    upload_id = str(uploading.create_upload(paths, "hosts"))
    a.start("upload", "process", upload_id)
    _wait_until_running(a, database_url, upload_id)
    b.start("upload", "process", upload_id)
    b.wait_for_line(WAITING)  # b's share is done: ProcessUpload waits for a's batch
    # luigid frees a's batch 14 to 15 s after a's last ping: 22 s or more into b's wait.
    time.sleep(8)
    assert a.proc.poll() is None, a.text()[-3000:]
    a.kill()
    killed = datetime.now()
    with db.connect(database_url) as conn:
        done = _finished(conn, upload_id)
    assert len(done) < count, "host a finished before it was killed: nothing left to take over"

    assert b.wait() == 0, b.text()[-3000:]
    # b waited longer than its patience for a live holder: the holder was silent.
    waited = (b.when(TAKING_OVER) - b.when(WAITING, last=False)).total_seconds()
    assert waited > PATIENCE_S, (waited, b.text()[-3000:])
    assert (b.when(TAKING_OVER) - killed).total_seconds() < 30, b.text()[-3000:]
    assert Counter(t.split("(", 1)[0] for t in b.ran()) == {"UploadBatch": 1, "ProcessUpload": 1}
    with db.connect(database_url) as conn:
        assert uploads.upload_summary(conn, upload_id)["status"] == "COMPLETE"
        assert rows.count(conn, "scenes", upload_id=upload_id) == count
        assert rows.count(conn, "upload_files", upload_id=upload_id, status="PROCESSING") == 0
        assert {n: t for n, t in _finished(conn, upload_id).items() if n in done} == done
    assert a.gone(), "something recreated the dead host's folders"


def _finished(conn, upload_id):
    """{file name: when its row last changed} of the upload's files that are SUCCESS."""
    files = uploads.list_files(conn, upload_id)
    return {f["filename"]: f["modified_at"] for f in files if f["status"] == "SUCCESS"}


def _wait_until_running(host, database_url, upload_id, timeout=90):
    """Returns once luigid has the upload's batch RUNNING and a file is being processed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert host.proc.poll() is None, host.text()[-3000:]
        batch = any(p.get("upload_id") == upload_id for p in running_tasks(scheduler_url()))
        with db.connect(database_url) as conn:
            busy = rows.count(conn, "upload_files", upload_id=upload_id, status="PROCESSING")
        if batch and busy:
            time.sleep(0.5)  # into GDAL's work on the first files
            return
        time.sleep(0.1)
    raise AssertionError(f"the batch never started:\n{host.text()[-3000:]}")


def test_compose_worker_scales_to_hosts_of_their_own():
    """`docker compose up --scale worker=3` (no Docker engine here: the file is read)."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    worker = compose["services"]["worker"]
    # Scaled containers cannot share a name or a host port.
    assert "container_name" not in worker and "ports" not in worker
    env = {**compose["x-rf-env"], **worker["environment"]}
    assert env["RF_DATA_ROOT"].startswith("s3://")
    assert env["AWS_ENDPOINT_URL_S3"] and env["RF_DATABASE_URL"]
    assert "luigi.cfg" in env["LUIGI_CONFIG_PATH"]
    # Its RF_HOME and scratch folder are on a volume of each container's own: an anonymous
    # one (a named volume or a host folder would be shared by the 3 workers).
    volumes = worker.get("volumes", [])
    shared = [v for v in volumes if (":" in v if isinstance(v, str) else v.get("source"))]
    assert not shared, shared
    mounts = [v if isinstance(v, str) else v["target"] for v in volumes]
    for key in ("RF_HOME", "RF_SCRATCH_DIR"):
        assert any(env[key] == m or env[key].startswith(m + "/") for m in mounts), (key, mounts)
    header = (REPO / "docker-compose.yml").read_text()
    assert "docker compose up -d --scale worker=3" in header
    readme = (REPO / "README.md").read_text()
    assert "docker compose up -d --scale worker=3" in readme
