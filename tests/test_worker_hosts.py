"""Worker hosts that share nothing but the services: two workers, each with its own RF_HOME
and RF_SCRATCH_DIR and the same ``s3://`` data root, luigid, PostgreSQL and store (as two
machines would), run an upload, an ingest and an import day together, each task once; and
when one is killed mid-task and its disk is gone with it, the other finishes the work."""

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
from rf_pipelines.tasks import UploadBatch
from rf_pipelines.tasks.runner import scheduler_url
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


class Host:
    """One worker host: its own RF_HOME and scratch folder (its disk), the shared services
    and ``s3://`` data root from the test's environment."""

    def __init__(self, folder):
        folder.mkdir(parents=True)
        self.home = folder / "home"
        self.scratch = folder / "scratch"
        self.output = folder / "output.log"  # the terminal, kept off its disk
        self.env = {**os.environ, "RF_HOME": str(self.home), "RF_SCRATCH_DIR": str(self.scratch)}

    def start(self, *argv):
        """Starts ``rf-pipelines --verbose ARGV`` on this host, in a process group of its own
        (so that killing it kills its pool's processes and Spark, as a host's death would)."""
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

    def text(self):
        return self.output.read_text()

    def events(self):
        """(event, task id) of each task this host's runs started, finished, suspended."""
        return EVENT.findall(self.text())

    def ran(self):
        """The ids of the tasks this host finished."""
        return [task for event, task in self.events() if event == "done"]


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
    """One host ended with the work done (0); the other too, or, when a task still ran on
    the first after its wait (20 s), 7 with the line saying so."""
    logs = [host.text()[-3000:] for host in hosts]
    assert 0 in codes and set(codes) <= {0, 7}, logs
    for host, code in zip(hosts, codes, strict=True):
        if code == 7:
            assert "already running on another worker" in host.text(), host.text()[-3000:]


def _ran_once_between(hosts, first):
    """The tasks each host finished from its ``first`` event on: each task ran once in all,
    whichever host ran it, and every start of one ended done or with new requirements.
    Returns {host index: [task ids finished]}."""
    events = [e for n, host in enumerate(hosts) for e in host.events()[first[n] :]]
    counts = Counter(events)
    twice = sorted(task for (event, task), n in counts.items() if event == "done" and n > 1)
    logs = f"{hosts[0].text()[-3000:]}\n{hosts[1].text()[-3000:]}"
    assert not twice, f"run twice: {twice}\n{logs}"
    assert not [task for event, task in events if event == "failed"], logs
    for (event, task), n in counts.items():
        if event == "running":
            assert n == counts["done", task] + counts["new requirements", task], (task, logs)
    return {
        n: [t for e, t in host.events()[first[n] :] if e == "done"] for n, host in enumerate(hosts)
    }


def _today():
    return datetime.now(UTC).date().isoformat()


def _families(ran):
    return Counter(task.split("(", 1)[0] for tasks in ran.values() for task in tasks)


def test_two_hosts_share_an_upload_an_ingest_and_an_import_day(hosts, tmp_path, database_url):
    # 200 files: two batches of 100, each taking seconds, so both hosts get one.
    (tmp_path / "in").mkdir()
    paths = [str(rasters.utm_tif(tmp_path / "in" / f"f{n:03d}.tif", size=32)) for n in range(200)]
    upload_id = str(uploading.create_upload(paths, "hosts"))

    codes = _both(hosts, "upload", "process", upload_id)
    assert codes == [0, 0], [h.text()[-3000:] for h in hosts]
    ran = _ran_once_between(hosts, [0, 0])
    assert _families(ran) == {"UploadBatch": 2, "ProcessUpload": 1}
    # The work was split: each host ran one of the two batches.
    assert [sum(t.startswith("UploadBatch(") for t in ran[n]) for n in (0, 1)] == [1, 1]
    with db.connect(database_url) as conn:
        summary = uploads.upload_summary(conn, upload_id)
        assert summary["status"] == "COMPLETE"
        assert rows.count(conn, "scenes", upload_id=upload_id) == 200
        scene_id = str(summary["files"][0]["scene_id"])
    # Each batch's log, written on its host, is published under the data root, where luigid
    # (given the same data root) serves it from, whichever host wrote it.
    for batch in (0, 1):
        task_id = UploadBatch(upload_id=upload_id, batch=batch).task_id
        log = files.join(config.settings().data_root, "logs", _today(), f"{task_id}.log")
        assert f"running {task_id}" in files.read_bytes(log).decode()

    before = [len(h.events()) for h in hosts]
    codes = _both(hosts, "ingest", scene_id)
    ran = _ran_once_between(hosts, before)
    assert _families(ran) == {"SceneCog": 1, "RenderTiles": 1, "IngestScene": 1}
    # The host that did not run the last step waited for the other one; when the Spark job
    # outlasts its wait (20 s) it exits 7, saying so.
    _check_codes(hosts, codes)
    with db.connect(database_url) as conn:
        scene = scenes.get_scene(conn, scene_id)
    assert scene["ingest_status"] == "INGESTED"
    assert scene["ingest_location"].startswith("s3://")

    mirror.put_big_day(config.settings().sentinel2_root, DAY, 1200)
    before = [len(h.events()) for h in hosts]
    codes = _both(hosts, "import", "sentinel2", "--date", DAY.isoformat())
    ran = _ran_once_between(hosts, before)
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
    a.kill()  # its process group, then its RF_HOME and scratch folder
    assert not a.home.exists() and not a.scratch.exists()
    with db.connect(database_url) as conn:
        assert uploads.get_upload(conn, upload_id)["upload_status"] == "PROCESSING"
        done = _finished(conn, upload_id)
    assert len(done) < 6, "host a finished before it was killed: nothing was left to take over"

    # Host b finds the batch RUNNING in luigid on a worker that no longer pings. luigid lets
    # it go worker_disconnect_delay (15 s) after its last ping; b's run asks luigid to prune
    # dead workers every second while it waits (at most 20 s), and the batch, FAILED with its
    # worker gone, is scheduled again at once by b's second pass (re-added as PENDING: luigid's
    # retry_delay only paces keep-alive workers retrying their own failures). So b waits
    # about 15 s from a's death, then redoes only the files a had not finished.
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
    assert not a.home.exists(), "something recreated the dead host's folders"


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
