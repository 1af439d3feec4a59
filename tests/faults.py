"""A seeded, randomized fault campaign: run a workflow's command, hurt it once at a random
moment, rerun the command as an operator would, and check that nothing was left claiming work,
lost, doubled or silently wiped.

    scripts/faults --trials 200 --seed 1 [--workflow upload|ingest|import|listener]
    scripts/faults --replay SEED --workflow W      (one trial again, from its seed)
    scripts/faults --fault kill_worker ...         (one kind of fault in every trial)

Workflows: an upload of six files, one of them corrupt; a scene ingest (Spark); an import day
of 1,500 Sentinel-2 scenes, three with bad metadata; a listener batch of upload and import
messages, with a malformed one. Faults: SIGKILL of the command (its whole process group) at a
random moment; SIGKILL of luigid, restarted a moment later; PostgreSQL stopped for 1-5 s; the
object store frozen (SIGSTOP) for 1-5 s; an exception raised in a random step, as it starts or
after it recorded its status (``tests/fault_cli.py``).

After every command that returned: (a) no upload, file, scene or import day is PROCESSING,
INGESTING or RUNNING unless luigid runs a task for it, and (e) a run that reported failed tasks
sent exactly one notification, any other none. After every command: (b) every FAILED row has a
reason naming its step. After the reruns: (c) the workflow converged to its expected end (only
the really bad inputs FAILED, each with its own reason) and (d) no duplicate scene, no output
without its row or marker, no row or marker without its output.

Every trial runs in its own database and data root on one stack of real services: the test
session's, or with ``scripts/faults`` a stack of its own started for the campaign.
"""

import argparse
import contextlib
import datetime
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

from rf_pipelines import clients, config, operations, services, uploading
from rf_pipelines.catalog import db, migrate
from rf_pipelines.errors import ALREADY_RUNNING, RETRY_LATER
from rf_pipelines.scheduler import WORKER_DISCONNECT_DELAY_S
from rf_pipelines.targets import files

REPO = Path(__file__).resolve().parents[1]
GEOTIFF = REPO / "tests" / "data" / "geotiff"
GOOD_FILES = [
    "byte.tif",
    "RGBA.uint16.tif",
    "world.byte.tif",
    "MCD43A4.A2017006.h21v11.006.2017018074804_B01.TIF",
    "nt_20201024_f18_nrt_s.tif",
]
BAD_FILE = GEOTIFF / "odd" / "corrupt.tif"
FAULTS = ("kill_worker", "kill_luigid", "stop_postgres", "freeze_store", "raise_in_step")
IN_FLIGHT = {
    "uploads": "SELECT id::text FROM uploads WHERE upload_status = 'PROCESSING'",
    "upload files": "SELECT upload_id || '/' || filename FROM upload_files "
    "WHERE status = 'PROCESSING'",
    "scenes": "SELECT id::text FROM scenes WHERE ingest_status = 'INGESTING'",
    "import days": "SELECT source || ' ' || day FROM import_days WHERE status = 'RUNNING'",
}
COMMAND_TIMEOUT_S = 600
# A failed task's line (runner.failure_line): "Family(params) failed: why (log: where)".
FAILED_TASK = re.compile(r"\b[A-Z]\w*\(.*\) failed: ")
DAY = datetime.date(2019, 3, 4)
DAY_SCENES = 1_500
BAD_SCENES = (111, 777, 1_333)


# --- the stack -------------------------------------------------------------------------------


class Inbox:
    """A real SMTP server (aiosmtpd) that counts the notifications it receives."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages = []
        self.controller = Controller(self, hostname="127.0.0.1", port=_free_port())
        self.controller.start()
        self.port = self.controller.port

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append(envelope.content.decode(errors="replace"))
        return "250 OK"

    def stop(self):
        self.controller.stop()


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Lab:
    """The services the trials share, and what is set up once for all of them."""

    home: Path
    admin_url: str
    template: str
    bucket: str
    work: Path
    inbox: Inbox = None
    luigi_cfg: Path = None
    _day_root: str = None

    def start(self):
        self.work.mkdir(parents=True, exist_ok=True)
        self.inbox = Inbox()
        self.luigi_cfg = self.work / "luigi.cfg"
        _write_luigi_cfg(self.luigi_cfg, self.inbox.port)
        return self

    def stop(self):
        if self.inbox:
            self.inbox.stop()

    def env(self, **changes):
        """The environment of a command of a trial: the stack's, this campaign's luigi.cfg."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RF_", "AWS_ENDPOINT_URL", "LUIGI_CONFIG_PATH"))
        }
        env.update(services.local_env(self.home))
        env["LUIGI_CONFIG_PATH"] = str(self.luigi_cfg)
        env["PYTHONPATH"] = str(REPO)
        env["RF_PORT_BASE"] = os.environ["RF_PORT_BASE"]
        env.update(changes)
        return env

    def new_database(self):
        name = f"rf_fault_{uuid.uuid4().hex[:10]}"
        _admin(self.admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name, self.admin_url.rsplit("/", 1)[0] + "/" + name

    def drop_database(self, name):
        _admin(self.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def day_root(self):
        """A mirror of one day of 1,500 Sentinel-2 tiles, three malformed (made once)."""
        if self._day_root is None:
            self._day_root = _put_big_day(f"s3://{self.bucket}/faults-day-{uuid.uuid4().hex[:8]}")
        return self._day_root


def _write_luigi_cfg(path, smtp_port):
    import configparser

    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(REPO / "luigi.cfg")
    if not cfg.has_section("RfNotify"):
        cfg.add_section("RfNotify")
    cfg.set("RfNotify", "channels", "smtp")
    cfg.set("RfNotify", "email_to", "oncall@example.org")
    cfg.set("RfNotify", "smtp_host", "127.0.0.1")
    cfg.set("RfNotify", "smtp_port", str(smtp_port))
    with open(path, "w") as out:
        cfg.write(out)


def _admin(admin_url, statement):
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def _put_big_day(root):
    from tests import mirror

    mirror.put_big_day(root, DAY, DAY_SCENES, bad=BAD_SCENES)
    return root


@contextlib.contextmanager
def _settings(env):
    """This process reads a trial's settings (to prepare its inputs and check its rows)."""
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("RF_", "AWS_", "LUIGI"))})
    config.settings.cache_clear()
    clients.reset()
    try:
        yield config.settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        config.settings.cache_clear()
        clients.reset()


# --- workflows -------------------------------------------------------------------------------


class Workflow:
    """What one trial runs and what it must end as."""

    name = ""
    steps = ()  # task families an exception may be raised in
    duration_s = 10.0  # about how long the command runs unhurt: faults land within it
    reruns = 5

    def __init__(self, trial):
        self.trial = trial

    def prepare(self, settings):
        """Makes the trial's inputs; returns the command's arguments."""
        raise NotImplementedError

    def converged(self, conn):
        """Violations of the expected end state (c), as strings."""
        raise NotImplementedError

    def outputs_consistent(self, conn):
        """Violations of (d), as strings."""
        return _duplicate_scenes(conn) + _upload_outputs(conn)

    def done(self, conn):
        """True when a rerun is no longer needed."""
        return not self.converged(conn)


class UploadWorkflow(Workflow):
    name = "upload"
    steps = (
        "ValidateUploadFile",
        "ConvertToCog",
        "MakeFootprints",
        "MakeThumbnails",
        "DescribeBands",
        "WriteStacItem",
        "RegisterUploadScene",
        "UploadBatch",
        "ProcessUpload",
    )
    duration_s = 3.0  # in batches, the six files take about 3.5 s unhurt

    def prepare(self, settings):
        folder = self.trial.folder / "files"
        folder.mkdir()
        for name in GOOD_FILES:
            shutil.copy(GEOTIFF / name, folder / name)
        shutil.copy(BAD_FILE, folder / "corrupt.tif")
        paths = sorted(str(p) for p in folder.iterdir())
        self.upload_id = str(uploading.create_upload(paths, "faults"))
        return ["upload", "process", self.upload_id]

    def converged(self, conn):
        return _upload_converged(conn, self.upload_id, GOOD_FILES, ["corrupt.tif"])


class IngestWorkflow(Workflow):
    name = "ingest"
    steps = ("SceneCog", "RenderTiles", "IngestScene")
    duration_s = 14.0

    def prepare(self, settings):
        from rf_pipelines.catalog import uploads

        upload_id = uploading.create_upload([str(GEOTIFF / "byte.tif")], "faults")
        process = ["upload", "process", str(upload_id), "--local-scheduler"]
        with open(self.trial.folder / "prepare.log", "w") as out:
            subprocess.run(
                [sys.executable, "-m", "rf_pipelines.cli", *process],
                env=self.trial.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
            )
        with db.connect(settings.database_url) as conn:
            self.scene_id = uploads.upload_summary(conn, upload_id)["files"][0]["scene_id"]
        return ["ingest", self.scene_id]

    def converged(self, conn):
        rows = _rows(
            conn,
            "SELECT ingest_status, ingest_location, ingested_by FROM scenes WHERE id = %s",
            (self.scene_id,),
        )
        status, location, lineage = rows[0]
        if status != "INGESTED" or not location or not lineage:
            return [f"scene {self.scene_id} is {status} ({location}, {lineage}), not INGESTED"]
        return []

    def outputs_consistent(self, conn):
        found = super().outputs_consistent(conn)
        for scene_id, location in _rows(
            conn, "SELECT id::text, ingest_location FROM scenes WHERE ingest_status = 'INGESTED'"
        ):
            folder = location.split("/{z}")[0]
            if not files.target_for(files.join(folder, "_SUCCESS")).exists():
                found.append(f"scene {scene_id} INGESTED but {folder}/_SUCCESS is missing")
        return found


class ImportWorkflow(Workflow):
    name = "import"
    steps = ("DiscoverDay", "ImportBatch", "ImportDay")
    duration_s = 6.0

    def prepare(self, settings):
        return ["import", "sentinel2", "--date", str(DAY)]

    def converged(self, conn):
        found = []
        day = _rows(conn, "SELECT status, discovered FROM import_days WHERE day = %s", (DAY,))
        if not day or day[0][0] != "PARTIAL":
            found.append(f"import day {DAY} is {day and day[0][0]}, not PARTIAL")
        failures = _rows(conn, "SELECT ref, reason FROM import_failures WHERE day = %s", (DAY,))
        bad = {ref for ref, _ in failures}
        if len(bad) != len(BAD_SCENES) or any(not reason for _, reason in failures):
            found.append(f"import failures {sorted(bad)}, not the {len(BAD_SCENES)} bad tiles")
        (count,) = _rows(conn, "SELECT count(*) FROM scenes WHERE owner = 'rf_pipelines'")[0]
        if count != DAY_SCENES - len(BAD_SCENES):
            found.append(f"{count} scenes imported, not {DAY_SCENES - len(BAD_SCENES)}")
        return found

    def outputs_consistent(self, conn):
        found = super().outputs_consistent(conn)
        # The day's row and its manifest go together; a batch's marker means every scene of
        # the batch is in, so no batch holding a bad tile (every batch here) has one.
        for day, manifest in _rows(conn, "SELECT day, manifest_url FROM import_days"):
            if not manifest or not files.target_for(manifest).exists():
                found.append(f"import day {day} without its manifest {manifest}")
        markers = _rows(
            conn, "SELECT marker_id FROM task_markers WHERE task_family = 'ImportBatch'"
        )
        if markers:
            found.append(f"ImportBatch markers {markers} for batches with a failed scene")
        return found


class ListenerWorkflow(Workflow):
    name = "listener"
    steps = UploadWorkflow.steps
    duration_s = 5.0
    reruns = 8
    visibility_s = 3

    def prepare(self, settings):
        sqs = clients.aws_client("sqs")
        name = f"rf-faults-{uuid.uuid4().hex[:8]}"
        self.dlq = sqs.create_queue(QueueName=f"{name}-dead")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.dlq, AttributeNames=["QueueArn"])
        policy = {"deadLetterTargetArn": arn["Attributes"]["QueueArn"], "maxReceiveCount": "10"}
        self.url = sqs.create_queue(
            QueueName=name,
            Attributes={
                "RedrivePolicy": json.dumps(policy),
                "VisibilityTimeout": str(self.visibility_s),
            },
        )["QueueUrl"]
        folder = self.trial.folder / "files"
        folder.mkdir()
        for name in GOOD_FILES[:3]:
            shutil.copy(GEOTIFF / name, folder / name)
        shutil.copy(BAD_FILE, folder / "corrupt.tif")
        self.good = str(
            uploading.create_upload([str(folder / n) for n in GOOD_FILES[:2]], "faults")
        )
        self.mixed = str(
            uploading.create_upload(
                [str(folder / GOOD_FILES[2]), str(folder / "corrupt.tif")], "faults"
            )
        )
        root = self.trial.lab.day_root()
        bucket, prefix = root[len("s3://") :].split("/", 1)
        from tests import mirror

        paths = [
            f"{prefix}/{mirror.tile_path(DAY, mirror.SQUARES[n % 300], zone=1 + n // 300)}"
            "/tileInfo.json"
            for n in (5, BAD_SCENES[0])
        ]
        bodies = [
            json.dumps({"upload_id": self.good}),
            json.dumps({"upload_id": self.mixed}),
            *(_s3_event(bucket, key) for key in paths),
            "{not json",
        ]
        for body in bodies:
            sqs.send_message(QueueUrl=self.url, MessageBody=body)
        self.tile = paths[0]
        return ["listen", self.url, "--once"]

    def done(self, conn):
        return super().done(conn) and self._waiting() == 0

    def _waiting(self):
        sqs = clients.aws_client("sqs")
        attributes = sqs.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())

    def converged(self, conn):
        found = _upload_converged(conn, self.good, GOOD_FILES[:2], [])
        found += _upload_converged(conn, self.mixed, GOOD_FILES[2:3], ["corrupt.tif"])
        names = _rows(conn, "SELECT count(*) FROM scenes WHERE owner = 'rf_pipelines'")
        if names[0][0] != 1:
            found.append(f"{names[0][0]} scenes from notifications, not the 1 good tile")
        dead = clients.aws_client("sqs").get_queue_attributes(
            QueueUrl=self.dlq, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
        if int(dead) != 3:  # the malformed message, the malformed tile, the mixed upload
            found.append(f"{dead} messages in the dead-letter queue, not 3")
        return found


def _s3_event(bucket, key):
    return json.dumps({"Records": [{"s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]})


WORKFLOWS = {w.name: w for w in (UploadWorkflow, IngestWorkflow, ImportWorkflow, ListenerWorkflow)}


# --- checks ----------------------------------------------------------------------------------


def _rows(conn, query, params=()):
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def _upload_converged(conn, upload_id, good, bad):
    found = []
    files_ = dict(
        (name, (status, error, step))
        for name, status, error, step in _rows(
            conn,
            "SELECT filename, status, error, failed_step FROM upload_files WHERE upload_id = %s",
            (upload_id,),
        )
    )
    (status, reason), *_ = _rows(
        conn, "SELECT upload_status, status_reason FROM uploads WHERE id = %s", (upload_id,)
    )
    expected = "FAILED" if bad else "COMPLETE"
    if status != expected:
        found.append(f"upload {upload_id} is {status}, not {expected} ({reason})")
    for name in good:
        if files_.get(name, ("missing",))[0] != "SUCCESS":
            found.append(f"{name} of upload {upload_id} is {files_.get(name)}, not SUCCESS")
    for name in bad:
        state = files_.get(name, ("missing", None, None))
        if state[0] != "FAILURE" or not state[2] or "corrupt" not in (state[1] or ""):
            found.append(f"{name} of upload {upload_id} is {state}, not FAILURE for its pixels")
    return found


def _duplicate_scenes(conn):
    rows = _rows(
        conn,
        "SELECT owner, name, count(*) FROM scenes GROUP BY owner, name HAVING count(*) > 1",
    )
    return [f"{n} scenes named {name!r} of {owner}" for owner, name, n in rows]


def _upload_outputs(conn):
    """Each SUCCESS file has its scene row and every output it lists; each scene of an upload
    has its file SUCCESS; each RegisterUploadScene marker has its scene."""
    found = []
    for upload_id, name, scene_id, outputs in _rows(
        conn,
        "SELECT upload_id::text, filename, scene_id::text, outputs FROM upload_files "
        "WHERE status = 'SUCCESS'",
    ):
        if not _rows(conn, "SELECT 1 FROM scenes WHERE id = %s", (scene_id,)):
            found.append(f"{upload_id}/{name} is SUCCESS without its scene {scene_id}")
        urls = [u for u in outputs.values() if isinstance(u, str)]
        urls += list((outputs.get("thumbnails") or {}).values())
        for url in urls:
            if not files.target_for(url).exists():
                found.append(f"{upload_id}/{name} lists {url}, which does not exist")
    for scene_id, upload_id, name in _rows(
        conn,
        "SELECT s.id::text, f.upload_id::text, f.filename FROM scenes s JOIN upload_files f "
        "ON f.scene_id = s.id WHERE f.status <> 'SUCCESS' AND f.status <> 'PROCESSING'",
    ):
        found.append(f"scene {scene_id} is registered but its file {upload_id}/{name} is not")
    markers = _rows(
        conn,
        "SELECT params->>'upload_id', params->>'filename' FROM task_markers "
        "WHERE task_family = 'RegisterUploadScene'",
    )
    for upload_id, name in markers:
        if not _rows(
            conn,
            "SELECT 1 FROM upload_files f JOIN scenes s ON s.id = f.scene_id "
            "WHERE f.upload_id = %s AND f.filename = %s",
            (upload_id, name),
        ):
            found.append(f"marker of RegisterUploadScene {upload_id}/{name} without its scene")
    return found


def _failed_without_step(conn, steps):
    """(b): FAILED rows whose reason does not name a step."""
    found = []
    names = tuple(steps) + ("RejectUploadFile", "reaped")
    for what, query in (
        ("upload", "SELECT id::text, status_reason FROM uploads WHERE upload_status = 'FAILED'"),
        (
            "file",
            "SELECT upload_id || '/' || filename, coalesce(failed_step, '') || ' ' || "
            "coalesce(error, '') FROM upload_files WHERE status = 'FAILURE'",
        ),
        ("scene", "SELECT id::text, status_reason FROM scenes WHERE ingest_status = 'FAILED'"),
    ):
        for key, reason in _rows(conn, query):
            if not reason or not any(step in reason for step in names):
                found.append(f"FAILED {what} {key} without the step in its reason: {reason!r}")
    for ref, reason in _rows(conn, "SELECT ref, reason FROM import_failures"):
        if not reason:
            found.append(f"failed import {ref} without a reason")
    return found


def _in_flight(conn, scheduler_url):
    """(a): rows claiming work that no task in luigid is doing."""
    try:
        running = operations.running_tasks(scheduler_url)
    except Exception:  # noqa: BLE001 - luigid down: nothing runs
        running = []
    held = {str(v) for params in running for v in params.values()}
    found = []
    for what, query in IN_FLIGHT.items():
        for (key,) in _rows(conn, query):
            if not any(part in held for part in key.split("/")):
                found.append(f"{what} {key} in flight with no task running for it")
    return found


# --- trials ----------------------------------------------------------------------------------


@dataclass
class Trial:
    lab: Lab
    workflow_name: str
    seed: int
    only_fault: str = None
    folder: Path = None
    fault: str = ""
    fired: bool = False
    detail: str = ""
    runs: list = field(default_factory=list)
    violations: list = field(default_factory=list)
    _returned: bool = True
    env: dict = None
    _proc: subprocess.Popen = None

    def run(self):
        rng = random.Random(self.seed)
        self.fault = rng.choice(FAULTS)
        self.fault = self.only_fault or self.fault
        self.folder = self.lab.work / f"trial-{self.seed}"
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        workflow = WORKFLOWS[self.workflow_name](self)
        db_name, db_url = self.lab.new_database()
        data_root = (
            str(self.folder / "data")
            if self.workflow_name == "import"
            else f"s3://{self.lab.bucket}/faults-{self.seed}"
        )
        env = self.lab.env(
            RF_DATABASE_URL=db_url,
            RF_DATA_ROOT=data_root,
            RF_SENTINEL2_ROOT=self.lab.day_root() if self.workflow_name == "import" else "",
            RF_FAULT_FIRED=str(self.folder / "fired"),
        )
        if not env["RF_SENTINEL2_ROOT"]:
            del env["RF_SENTINEL2_ROOT"]
        try:
            self.env = env
            with _settings(env) as settings:
                argv = workflow.prepare(settings)
            self._hurt(rng, workflow, env, argv)
            with _settings(env), db.connect(db_url) as conn:
                self._check_after(conn, workflow)
            for _ in range(workflow.reruns):
                with _settings(env), db.connect(db_url) as conn:
                    if workflow.done(conn):
                        break
                if self.workflow_name == "listener":
                    time.sleep(ListenerWorkflow.visibility_s)
                if (
                    self.runs[-1]["code"] in (ALREADY_RUNNING, RETRY_LATER)
                    or self.runs[-1]["not_the_end"]
                ):
                    # As the message says: try again in a moment (luigid frees a dead
                    # worker's tasks after WORKER_DISCONNECT_DELAY_S).
                    time.sleep(WORKER_DISCONNECT_DELAY_S / 2)
                self._command(env, argv, rerun=True)
                with _settings(env), db.connect(db_url) as conn:
                    self._check_after(conn, workflow)
            with _settings(env), db.connect(db_url) as conn:
                self.violations += [f"(c) {v}" for v in workflow.converged(conn)]
                self.violations += [f"(d) {v}" for v in workflow.outputs_consistent(conn)]
        except Exception as err:  # noqa: BLE001 - a trial that breaks is a violation too
            self.violations.append(f"the trial broke: {type(err).__name__}: {err}")
        finally:
            _restore_services(self.lab)
            self.lab.drop_database(db_name)
        if not self.violations:
            shutil.rmtree(self.folder, ignore_errors=True)
        return self

    def _hurt(self, rng, workflow, env, argv):
        """The first run of the command, with this trial's fault."""
        delay = rng.uniform(0.2, workflow.duration_s)
        pause = rng.uniform(1, 5)
        if self.fault == "raise_in_step":
            family, when = rng.choice(workflow.steps), rng.choice(("start", "progress"))
            self.detail = f"{family} at {when}"
            command = [sys.executable, "-m", "tests.fault_cli", family, when, "--", *argv]
            self._command(env, argv, command=command)
            self.fired = (self.folder / "fired").exists()
            return
        self.detail = f"after {delay:.1f}s" + (
            f" for {pause:.1f}s" if self.fault in ("stop_postgres", "freeze_store") else ""
        )
        hurt = threading.Thread(target=self._apply, args=(delay, pause), daemon=True, name="fault")
        self._started = threading.Event()
        self._proc = None
        hurt.start()
        self._command(env, argv, on_start=self._started.set)
        hurt.join(60)

    def _apply(self, delay, pause):
        self._started.wait(60)
        time.sleep(delay)
        proc = self._proc
        if self.fault == "kill_worker":
            if proc and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                self.fired = True
        elif self.fault == "kill_luigid":
            pid = int((self.lab.home / "services" / "luigid" / "pid").read_text())
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            self.fired = proc is not None and proc.poll() is None
            time.sleep(pause / 2)
            _start_luigid(self.lab)
        elif self.fault == "stop_postgres":
            self.fired = proc is not None and proc.poll() is None
            services.stop(self.lab.home, ["postgres"])
            time.sleep(pause)
            services.start(self.lab.home, ["postgres"])
        elif self.fault == "freeze_store":
            pid = int((self.lab.home / "services" / "s3" / "pid").read_text())
            self.fired = proc is not None and proc.poll() is None
            os.killpg(pid, signal.SIGSTOP)
            try:
                time.sleep(pause)
            finally:
                os.killpg(pid, signal.SIGCONT)

    def _command(self, env, argv, command=None, on_start=None, rerun=False):
        command = command or [sys.executable, "-m", "rf_pipelines.cli", *argv]
        before = len(self.lab.inbox.messages)
        log = self.folder / f"run-{len(self.runs)}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                command,
                env=env,
                cwd=self.folder,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self._proc = proc
            if on_start:
                on_start()
            try:
                code = proc.wait(COMMAND_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                code = proc.wait()
                self.violations.append(f"{' '.join(argv)} hung for {COMMAND_TIMEOUT_S}s")
        time.sleep(0.3)  # a notification sent as the command ended reaches the inbox
        output = log.read_text(errors="replace")
        sent = len(self.lab.inbox.messages) - before
        self.runs.append(
            {
                "argv": argv,
                "code": code,
                "sent": sent,
                "log": str(log),
                "not_the_end": "so this is not the end" in output,
            }
        )
        killed = code == -signal.SIGKILL
        if not killed:
            reported = [
                line
                for line in output.splitlines()
                if line.startswith("Error: ") and FAILED_TASK.match(line[len("Error: ") :])
            ]
            expected = 1 if reported else 0
            if self.workflow_name != "listener" and sent != expected:
                self.violations.append(
                    f"(e) run {len(self.runs)} exited {code} after reporting "
                    f"{len(reported)} failed tasks and sent {sent} notifications"
                )
            if self.workflow_name == "listener":
                # One notification per job (an upload or ingest message) whose run had
                # failed tasks; none for the rest.
                jobs = [
                    json.loads(line)
                    for line in output.splitlines()
                    if line.startswith('{"message"')
                ]
                failed_jobs = [
                    j
                    for j in jobs
                    if (j.get("upload") or j.get("ingest"))
                    and j["outcome"] != "stored"
                    and (
                        FAILED_TASK.search(j["reason"] or "")
                        or "so this is not the end" in (j["reason"] or "")
                    )
                ]
                if sent != len(failed_jobs):
                    self.violations.append(
                        f"(e) listener run {len(self.runs)}: {len(failed_jobs)} jobs with "
                        f"failed tasks and {sent} notifications"
                    )
        self._returned = not killed
        return code

    def _check_after(self, conn, workflow):
        if self._returned:
            self.violations += [
                f"(a) after run {len(self.runs)}: {v}"
                for v in _in_flight(conn, config.scheduler_url())
            ]
        self.violations += [
            f"(b) after run {len(self.runs)}: {v}"
            for v in _failed_without_step(conn, workflow.steps)
        ]


def _start_luigid(lab):
    saved = os.environ.pop("RF_DATA_ROOT", None)
    try:
        services.start(lab.home, ["luigid"])
    finally:
        if saved is not None:
            os.environ["RF_DATA_ROOT"] = saved


def _restore_services(lab):
    """Whatever a fault did, the next trial starts with every service up and running."""
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.killpg(int((lab.home / "services" / "s3" / "pid").read_text()), signal.SIGCONT)
    services.start(lab.home, ["postgres", "s3"])
    _start_luigid(lab)


# --- the campaign ----------------------------------------------------------------------------


def seeds(seed, trials, workflows, grid=False):
    """(workflow, fault or None, trial seed) of each trial: the workflows in turn, seeds from
    ``seed``; the trial's seed picks its fault, or, with ``grid``, every workflow meets every
    fault in turn (20 trials cover the grid)."""
    rng = random.Random(seed)
    plan = []
    for i in range(trials):
        fault = FAULTS[(i // len(workflows)) % len(FAULTS)] if grid else None
        plan.append((workflows[i % len(workflows)], fault, rng.getrandbits(31)))
    return plan


def campaign(lab, trials, seed, workflows=tuple(WORKFLOWS), report=print, fault=None, grid=False):
    """Runs the trials (of ``fault`` only, if given); returns them. ``report`` gets a line per
    trial."""
    done = []
    plan = seeds(seed, trials, list(workflows), grid)
    for n, (workflow, planned, trial_seed) in enumerate(plan, 1):
        started = time.monotonic()
        trial = Trial(lab, workflow, trial_seed, fault or planned).run()
        done.append(trial)
        outcome = "ok" if not trial.violations else f"{len(trial.violations)} VIOLATIONS"
        codes = ",".join(str(r["code"]) for r in trial.runs)
        report(
            f"trial {n:>3} {workflow:<8} seed {trial_seed:<10} {trial.fault:<13} "
            f"{'fired' if trial.fired else 'missed':<6} {trial.detail:<24} exits {codes:<10} "
            f"{time.monotonic() - started:5.1f}s {outcome}"
        )
        for violation in trial.violations:
            report(f"    {violation}")
    return done


def table(trials, elapsed):
    """The campaign's summary: trials, faults by kind, violations and their seeds."""
    lines = [f"{len(trials)} trials in {elapsed:.0f} s"]
    by_fault = Counter((t.fault, t.fired) for t in trials)
    by_workflow = Counter(t.workflow_name for t in trials)
    lines.append("workflows: " + ", ".join(f"{w} {n}" for w, n in sorted(by_workflow.items())))
    lines.append(f"{'fault':<14}{'trials':>7}{'fired':>7}{'violations':>12}")
    for fault in FAULTS:
        of_kind = [t for t in trials if t.fault == fault]
        lines.append(
            f"{fault:<14}{len(of_kind):>7}{by_fault[(fault, True)]:>7}"
            f"{sum(bool(t.violations) for t in of_kind):>12}"
        )
    bad = [t for t in trials if t.violations]
    lines.append(f"violations: {sum(len(t.violations) for t in bad)} in {len(bad)} trials")
    for t in bad:
        lines.append(f"  replay: scripts/faults --replay {t.seed} --workflow {t.workflow_name}")
        lines.extend(f"    {v}" for v in t.violations)
    return "\n".join(lines)


@contextlib.contextmanager
def own_lab():
    """A stack of the campaign's own (home under .rf-test, free ports), stopped at the end."""
    from tests.conftest import TEST_HOMES, free_port_base

    home = TEST_HOMES / f"faults-{os.getpid()}"
    for key in [k for k in os.environ if k.startswith(("RF_", "AWS_ENDPOINT_URL"))]:
        del os.environ[key]
    os.environ["RF_PORT_BASE"] = str(free_port_base())
    os.environ["LUIGI_CONFIG_PATH"] = str(REPO / "luigi.cfg")
    os.environ.update(services.local_env(home))
    config.settings.cache_clear()
    clients.reset()
    services.start(home)
    lab = None
    try:
        admin = os.environ["RF_DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
        template = f"rf_fault_template_{uuid.uuid4().hex[:8]}"
        _admin(admin, f'CREATE DATABASE "{template}"')
        migrate.migrate(admin.rsplit("/", 1)[0] + "/" + template)
        bucket = f"rf-faults-{uuid.uuid4().hex[:8]}"
        clients.aws_client("s3", config.settings().s3_endpoint_url).create_bucket(Bucket=bucket)
        # Trials with violations keep their folder (logs of every run) after the campaign.
        lab = Lab(home, admin, template, bucket, TEST_HOMES / f"faults-trials-{os.getpid()}")
        lab.start()
        yield lab
    finally:
        if lab:
            lab.stop()
        services.stop(home)
        shutil.rmtree(home, ignore_errors=True)


def main(argv=None):
    # Stopped with SIGTERM (a timeout, a kill), the campaign's stack is stopped all the same.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    parser = argparse.ArgumentParser(prog="scripts/faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workflow", choices=sorted(WORKFLOWS), action="append")
    parser.add_argument("--replay", type=int, help="run the one trial of this seed again")
    parser.add_argument("--fault", choices=FAULTS, help="this fault in every trial")
    args = parser.parse_args(argv)
    workflows = args.workflow or list(WORKFLOWS)
    started = time.monotonic()
    with own_lab() as lab:
        if args.replay is not None:
            trials = [Trial(lab, workflows[0], args.replay, args.fault).run()]
            for v in trials[0].violations:
                print(v)
        else:
            trials = campaign(lab, args.trials, args.seed, workflows, fault=args.fault)
    print(table(trials, time.monotonic() - started))
    return 1 if any(t.violations for t in trials) else 0


if __name__ == "__main__":
    sys.exit(main())
