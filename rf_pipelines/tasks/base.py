"""The shared task base: version, output paths, markers, failure messages."""

import functools
import hashlib
import inspect
import logging
import traceback

import luigi

from rf_pipelines import config, retry, runs
from rf_pipelines.errors import ConfigError, PermanentError
from rf_pipelines.targets import MarkerTarget, output_url, target_for

log = logging.getLogger(__name__)


def _recording_errors(complete):
    """Wraps ``complete`` so that an error it raises is recorded with the run's failures."""

    @functools.wraps(complete)
    def checked(self):
        try:
            return complete(self)
        except Exception as err:
            runs.record_failure(self, err, "schedule")
            raise

    return checked


_CLASSES = []  # every RfTask subclass, for the key of the lineage cache
_LINEAGES = {}
_LINEAGES_KEPT = 100_000


class RfTask(luigi.Task):
    """Base of every rf_pipelines task.

    Subclasses set ``workflow`` (the output folder), bump ``version`` whenever their logic
    changes (outputs then go to a new path and marker; the old ones stay readable), and
    implement ``object_id()``: the id of the thing they work on (an upload, a scene).

    A task's outputs stand on its upstream steps too: their versions are part of its output
    path and marker (``upstream_digest``), and of ``lineage``, which targets that are a
    catalog status (an upload COMPLETE, a scene INGESTED) compare with what they recorded. So
    bumping any step recomputes it and everything downstream of it on the next run.
    """

    workflow = "misc"
    version = 1

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _CLASSES.append(cls)
        if "run" in cls.__dict__:
            cls.run = _with_task_log(cls.__dict__["run"])
        if "complete" in cls.__dict__:
            cls.complete = _recording_errors(cls.__dict__["complete"])

    # luigi's check of the outputs; an error raised there is recorded for the run's report
    # (a bad parameter often shows first there, before anything runs).
    complete = _recording_errors(luigi.Task.complete)

    def retry(self, fn, *args, **kwargs):
        """Calls ``fn`` with this task family's retry bound for transient errors
        (``[rf_retries]`` in luigi.cfg: the family's key, else the workflow's, else
        ``default``; ``ATTEMPTS`` or ``ATTEMPTS:FIRST_WAIT_SECONDS``)."""
        attempts, first_wait = retry_policy(self.task_family, self.workflow)
        return retry.call(fn, *args, attempts=attempts, first_wait=first_wait, **kwargs)

    def report_progress(self, message, percent=None):
        """Shows ``message`` (and a percentage) in the visualiser while the task runs, and
        writes it to the task's log: an upload batch's log then names each step of each of
        its files as it starts (its pool's processes write to the batch's log)."""
        log.info("progress: %s", message)
        if callable(getattr(self, "set_status_message", None)):
            self.set_status_message(message)
        if percent is not None and callable(getattr(self, "set_progress_percentage", None)):
            self.set_progress_percentage(int(percent))

    def object_id(self):
        """The id of the object this task works on; one path segment."""
        raise NotImplementedError

    def claim(self):
        """The catalog row this task moves to an in-flight status (PROCESSING, INGESTING,
        RUNNING), as ``operations.Claim``; None when it moves none. When a run through luigid
        ends unfinished, each claim nobody works on any more is released
        (``operations.release``)."""
        return None

    def upstream(self):
        """The tasks whose outputs this one reads, for its lineage: ``requires()``. A task
        whose requirements are dynamic or read the catalog returns one of each kind instead."""
        return luigi.task.flatten(self.requires())

    @property
    def lineage(self):
        """``Family@vN`` of this task and of every task upstream of it, sorted and
        comma-joined: the versions of all the work its output stands on. Computed once per
        task and set of class versions (every complete() check reads it)."""
        key = (self.task_id, tuple(cls.version for cls in _CLASSES))
        if key not in _LINEAGES:
            if len(_LINEAGES) >= _LINEAGES_KEPT:  # a long-lived listener: start afresh
                _LINEAGES.clear()
            _LINEAGES[key] = self._lineage()
        return _LINEAGES[key]

    def _lineage(self):
        versions, pending = {self.task_family: self.version}, list(self.upstream())
        while pending:
            task = pending.pop()
            if task.task_family not in versions:
                # A plain luigi task (external data, say) has no version: its name stands.
                versions[task.task_family] = getattr(task, "version", None)
                more = task.upstream() if isinstance(task, RfTask) else task.requires()
                pending.extend(luigi.task.flatten(more))
        return ",".join(
            family if version is None else f"{family}@v{version}"
            for family, version in sorted(versions.items())
        )

    @property
    def upstream_digest(self):
        """8 hex digits of the upstream steps' versions; None for a task that reads no other
        task's output (its path and marker then carry its own version alone)."""
        mine = f"{self.task_family}@v{self.version}"
        upstream = [part for part in self.lineage.split(",") if part != mine]
        if not upstream:
            return None
        return hashlib.sha1(",".join(upstream).encode()).hexdigest()[:8]

    @property
    def written_by(self):
        """Recorded with everything the task writes: ``TaskFamily@vN``."""
        return f"{self.task_family}@v{self.version}"

    def output_url(self, name):
        """URL of one of this task's output files under the data root."""
        return output_url(
            config.settings().data_root,
            self.workflow,
            self.object_id(),
            self.task_family,
            self.version,
            name,
            upstream=self.upstream_digest,
        )

    def file_target(self, name, binary=True):
        """An atomic file target for ``output_url(name)``."""
        return target_for(self.output_url(name), binary=binary)

    def marker_target(self):
        """A Postgres marker for database steps; the versions of the step and of those
        upstream of it are part of the marker id."""
        upstream = self.upstream_digest
        return MarkerTarget(
            marker_id=f"{self.task_id}@v{self.version}" + (f"-{upstream}" if upstream else ""),
            task_family=self.task_family,
            task_version=self.version,
            params=self.to_str_params(only_significant=True),
        )

    def on_failure(self, exception):
        """Bad input gets its one-line message; anything else its traceback too."""
        if isinstance(exception, PermanentError):
            return f"{type(exception).__name__}: {exception}"
        return traceback.format_exc()


@RfTask.event_handler(luigi.Event.BROKEN_TASK)
def _record_broken(task, error):
    """requires() raised: luigi cannot schedule the task; the run's report says why."""
    runs.record_failure(task, error, "schedule")


def _with_task_log(run):
    """Runs ``run`` with its log captured to the task's log file (the tracking URL)."""

    def start(task, log):
        if callable(getattr(task, "set_tracking_url", None)):
            task.set_tracking_url(runs.tracking_url(task, log.url))

    if inspect.isgeneratorfunction(run):

        @functools.wraps(run)
        def generator(self):
            with runs.TaskLog(self) as log:
                start(self, log)
                return (yield from run(self))

        return generator

    @functools.wraps(run)
    def plain(self):
        with runs.TaskLog(self) as log:
            start(self, log)
            return run(self)

    return plain


@functools.cache
def retry_policy(family, workflow):
    """(attempts, first wait in seconds) for a task family, from ``[rf_retries]``.

    Raises:
        ConfigError: a value is not ``N`` or ``N:SECONDS`` with N >= 1.
    """
    cfg = luigi.configuration.get_config()
    for key in (family, workflow, "default"):
        value = cfg.get("rf_retries", key, None)
        if value:
            break
    else:
        return retry.ATTEMPTS, retry.FIRST_WAIT_S
    attempts, _, wait = str(value).partition(":")
    try:
        parsed = int(attempts), float(wait) if wait else retry.FIRST_WAIT_S
    except ValueError:
        parsed = (0, 0)
    if parsed[0] < 1 or parsed[1] < 0:
        raise ConfigError(
            f"[rf_retries] {key} = {value!r} in luigi.cfg: write ATTEMPTS or "
            "ATTEMPTS:FIRST_WAIT_SECONDS, attempts at least 1"
        )
    return parsed
