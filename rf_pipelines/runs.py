"""One run of ``build``: its id, each task's log file, and the failures it collected.

Tasks may run in processes forked by luigi's worker, so what they report goes through
files in the run's folder (``RF_RUN_DIR``, inherited by the forks), not through memory.
A task's log is written locally while it runs and published under the data root at
``logs/{YYYY-MM-DD}/{task_id}.log``. Through luigid, the task's tracking URL is that log as
luigid serves it (``{luigid}/logs/...``, see ``rf_pipelines.scheduler``); with the local
scheduler it is the log's own URL.
"""

import datetime
import json
import logging
import os
import shutil
import time
import traceback
import uuid
from pathlib import Path

from rf_pipelines import config
from rf_pipelines.targets import files

ENV = "RF_RUN_DIR"
# Where luigid serves the published task logs (rf_pipelines.scheduler's route); build() names
# it in LOGS_URL_ENV when the tasks run through luigid.
LOGS_PATH = "/logs"
LOGS_URL_ENV = "RF_LOGS_URL"
# Set by the command line: the log of the command itself (scheduling, luigi's own messages).
COMMAND_LOG_ENV = "RF_COMMAND_LOG"
_MESSAGE_LIMIT = 400
_FORMAT = "%(asctime)s %(levelname)s %(name)s [pid %(process)d] %(message)s"
# A long-running process (the listener) starts many runs: it prunes at most this often.
PRUNE_EVERY_S = 600
_last_prune = {}  # runs folder -> monotonic time of its last prune by this process
log = logging.getLogger(__name__)


def start():
    """Creates a run folder under RF_HOME/runs and names it in the environment.

    Returns:
        Path: the folder.
    """
    settings = config.settings()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    folder = settings.home / "runs" / f"{stamp}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(folder)
    now = time.monotonic()
    if now - _last_prune.get(folder.parent, -PRUNE_EVERY_S) >= PRUNE_EVERY_S:
        _last_prune[folder.parent] = now
        prune(folder.parent, settings.runs_keep_days)
    return folder


def prune(runs_folder, keep_days):
    """Removes what under ``runs_folder`` was last changed more than ``keep_days`` ago: run
    folders (by their newest file: a long run still writing is kept) and the loose task logs
    of ``adhoc``. Returns how many entries it removed."""
    cutoff = time.time() - keep_days * 86400
    removed = 0
    for entry in sorted(Path(runs_folder).glob("*")) + sorted(Path(runs_folder).glob("adhoc/*")):
        try:
            if entry.name == "adhoc" or _last_change(entry) >= cutoff:
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed += 1
        except OSError as err:  # another process pruning, or a file in use: next time
            log.debug("could not remove %s: %s", entry, err)
    return removed


def _last_change(path):
    """The newest modification time of ``path`` and, for a folder, of the files in it."""
    times = [path.stat().st_mtime]
    if path.is_dir():
        times += [child.stat().st_mtime for child in path.iterdir()]
    return max(times)


def failures(folder):
    """The failures the run's tasks recorded, in order, one per task and phase."""
    path = Path(folder) / "failures.jsonl"
    if not path.exists():
        return []
    seen, found = set(), []
    for line in path.read_text().splitlines():
        if line.strip():
            failure = json.loads(line)
            key = (failure["task_id"], failure.get("phase", "run"))
            if key not in seen:
                seen.add(key)
                found.append(failure)
    return found


def _log_name(task):
    day = datetime.datetime.now(datetime.UTC).date().isoformat()
    return day, task.task_id.replace("/", "_") + ".log"


def log_url(task):
    """Where the task's log is published."""
    day, name = _log_name(task)
    return files.join(config.settings().data_root, "logs", day, name)


def tracking_url(task, published):
    """The link to the task's log in the visualiser: through luigid, the path luigid serves
    it at, relative to luigid's own address (which the worker may know by another name, as
    in docker-compose); with the local scheduler, the published log's own URL."""
    served = os.environ.get(LOGS_URL_ENV)
    if not served:
        return published
    day, name = _log_name(task)
    return f"{served}/{day}/{name}"


def error_kind(error):
    """``transient`` (worth retrying), ``config`` (a setting is wrong), ``permanent`` (the
    input is wrong) or ``error`` (a bug or an unknown failure)."""
    from rf_pipelines.errors import ConfigError, PermanentError, is_transient

    if isinstance(error, ConfigError):
        return "config"
    if isinstance(error, PermanentError):
        return "permanent"
    return "transient" if is_transient(error) else "error"


def one_line(error):
    """``Type: message`` on one line, shortened: what a terminal and a notification show."""
    text = " ".join(str(error).split()) or "(no message)"
    if len(text) > _MESSAGE_LIMIT:
        text = text[: _MESSAGE_LIMIT - 3] + "..."
    return f"{type(error).__name__}: {text}"


def record_failure(task, error, phase, log=None, within=None):
    """Adds a failure to the run's record (no-op outside a run).

    Args:
        phase: ``run`` (in run()) or ``schedule`` (checking completeness or requirements).
        log: where the details are; by default the command's log.
        within: the task_id of the task that ran ``task`` in its own process (a batch of
            files runs each file's steps): the run reports ``task``'s failure, not that one's.
    """
    run = os.environ.get(ENV)
    if not run:
        return
    line = {
        "task_id": task.task_id,
        "family": task.task_family,
        "params": task.to_str_params(only_significant=True),
        "error": one_line(error),
        "kind": error_kind(error),
        "phase": phase,
        "log": log or os.environ.get(COMMAND_LOG_ENV) or "-",
        "within": within,
        # Raised for failures its steps recorded one by one (uploads' FilesFailed).
        "per_file": bool(getattr(error, "per_file", False)),
    }
    with open(Path(run) / "failures.jsonl", "a") as out:
        out.write(json.dumps(line) + "\n")


class TaskLog:
    """Captures the package's and luigi's log records into the task's own log file while the
    task runs, then publishes the file; records a failure for the run's notification."""

    def __init__(self, task):
        self.task = task
        self.url = log_url(task)
        folder = Path(os.environ.get(ENV) or config.settings().home / "runs" / "adhoc")
        folder.mkdir(parents=True, exist_ok=True)
        self.local = folder / Path(self.url).name
        self.handler = None

    def __enter__(self):
        self.handler = logging.FileHandler(self.local)
        self.handler.setFormatter(logging.Formatter(_FORMAT))
        self.handler.setLevel(logging.INFO)
        for name in ("rf_pipelines", "luigi-interface"):
            logging.getLogger(name).addHandler(self.handler)
        logging.getLogger("rf_pipelines").setLevel(logging.INFO)
        logging.getLogger("rf_pipelines").info("running %s", self.task.task_id)
        return self

    def __exit__(self, kind, error, tb):
        log = logging.getLogger("rf_pipelines")
        if isinstance(error, GeneratorExit):
            error = None  # luigi left a generator run for new dependencies: not a failure
        if error is not None:
            log.error("failed: %s", "".join(traceback.format_exception(kind, error, tb)))
        for name in ("rf_pipelines", "luigi-interface"):
            logging.getLogger(name).removeHandler(self.handler)
        self.handler.close()
        try:
            files.copy_into(str(self.local), self.url)
        except Exception as err:  # noqa: BLE001 - a log that cannot be published stays local
            log.warning("log of %s kept at %s: %s", self.task.task_id, self.local, err)
            self.url = str(self.local)
        if error is not None:
            record_failure(self.task, error, "run", log=self.url)
        return False
