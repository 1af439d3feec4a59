"""One run of ``build``: its id, each task's log file, and the failures it collected.

Tasks may run in processes forked by luigi's worker, so what they report goes through
files in the run's folder (``RF_RUN_DIR``, inherited by the forks), not through memory.
A task's log is written locally while it runs and published under the data root at
``logs/{YYYY-MM-DD}/{task_id}.log``; its URL is the task's tracking URL in the visualiser.
"""

import datetime
import json
import logging
import os
import traceback
import uuid
from pathlib import Path

from rf_pipelines import config
from rf_pipelines.targets import files

ENV = "RF_RUN_DIR"
_FORMAT = "%(asctime)s %(levelname)s %(name)s [pid %(process)d] %(message)s"


def start():
    """Creates a run folder under RF_HOME/runs and names it in the environment.

    Returns:
        Path: the folder.
    """
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    folder = config.settings().home / "runs" / f"{stamp}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(folder)
    return folder


def failures(folder):
    """The failures the run's tasks recorded, in order."""
    path = Path(folder) / "failures.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def log_url(task):
    """Where the task's log is published."""
    day = datetime.datetime.now(datetime.UTC).date().isoformat()
    safe = task.task_id.replace("/", "_")
    return files.join(config.settings().data_root, "logs", day, f"{safe}.log")


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
            self._record_failure(error)
        return False

    def _record_failure(self, error):
        run = os.environ.get(ENV)
        if not run:
            return
        line = {
            "task_id": self.task.task_id,
            "family": self.task.task_family,
            "params": self.task.to_str_params(only_significant=True),
            "error": f"{type(error).__name__}: {error}",
            "log": self.url,
        }
        with open(Path(run) / "failures.jsonl", "a") as out:
            out.write(json.dumps(line) + "\n")
