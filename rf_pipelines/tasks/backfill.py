"""Backfills in windows: a long range of days given to luigid a window at a time.

luigid scans every pending task each time a worker asks for work, so one build of a decade
(3,653 days, three or more tasks a day) would hold tens of thousands of tasks on it and slow
every worker and the visualiser down (luigi issues #1750, #2277). A backfill holds at most
``backfill_tasks`` (``RF_BACKFILL_TASKS``, default 2,000) of them at once instead:

- a window is ``backfill_tasks // 3`` days (a day with scenes is at least DiscoverDay,
  ImportDay and one ImportBatch); its days are first discovered, one DiscoverDay each;
- then they are imported in groups whose tasks fit the bound: a day is its DiscoverDay (done
  by then), its ImportDay and one ImportBatch per ``BATCH_SIZE`` scenes of its manifest, which
  discovery counted. A day is never split: one with more batches than the bound runs alone.
- as each build ends, luigid forgets its finished tasks (``RfScheduler.forget_done``): its
  ``remove_delay`` would keep them a day, and every list luigid serves goes through all the
  tasks it holds. Failed ones stay, for the links the command reports.

A window whose days failed (exit 3) or that met another worker's run (7) is reported and the
next window runs; any other outcome (a service or API away, 75; a bad setting, 2; a task that
could not be scheduled) stops the backfill, as the next windows would meet it too. The
command then reports every day and the failures of every window, as one build would.
"""

import datetime
import logging
import os

import luigi.interface
from luigi.rpc import RPCError

from rf_pipelines import config, runs
from rf_pipelines import notify as notifications
from rf_pipelines.catalog import db, imports
from rf_pipelines.errors import (
    ALREADY_RUNNING,
    RETRY_LATER,
    TASK_FAILED,
    BuildFailed,
    ServiceUnavailable,
)
from rf_pipelines.tasks.imports import BATCH_SIZE, DiscoverDay, ImportBatch, ImportDay
from rf_pipelines.tasks.runner import build, scheduler_url

log = logging.getLogger(__name__)

# DiscoverDay, ImportDay and one ImportBatch: the fewest tasks a day with scenes makes.
TASKS_PER_DAY = 3
# Outcomes after which the next window still runs: some days failed (the other days do not
# depend on them), or another worker holds some of the work (luigid shares it).
_GO_ON = (0, TASK_FAILED, ALREADY_RUNNING)


def windows(days, bound):
    """``days`` in consecutive windows of ``bound // TASKS_PER_DAY`` days (at least one)."""
    size = max(1, bound // TASKS_PER_DAY)
    return [days[n : n + size] for n in range(0, len(days), size)]


def tasks_of_day(discovered):
    """The tasks luigid holds for a discovered day: DiscoverDay, ImportDay, its batches."""
    return 2 + (discovered + BATCH_SIZE - 1) // BATCH_SIZE


def groups(days, counts, bound):
    """``days`` in order, packed into groups whose tasks (``tasks_of_day`` of each day's
    ``counts``, one batch when unknown) add up to at most ``bound``; a day over it alone."""
    packed, group, held = [], [], 0
    for day in days:
        count = counts.get(day)
        tasks = tasks_of_day(BATCH_SIZE if count is None else count)
        if group and held + tasks > bound:
            packed.append(group)
            group, held = [], 0
        group.append(day)
        held += tasks
    return packed + ([group] if group else [])


class _Builds:
    """The builds of one backfill, and what they reported put together as one build reports."""

    def __init__(self, local_scheduler, workers):
        self.local_scheduler, self.workers = local_scheduler, workers
        self.lines, self.failures, self.summaries, self.codes = [], [], [], []

    def run(self, tasks):
        """Runs one build; returns the failures it reported."""
        try:
            build(tasks, local_scheduler=self.local_scheduler, workers=self.workers, notify=False)
        except BuildFailed as err:
            self.add(err)
            return err.failures
        except ServiceUnavailable as err:
            self.stop(RETRY_LATER, f"{err} (retry later)")
        except RPCError as err:
            # luigid went away during the build, for longer than the worker's retries.
            log.exception("luigid stopped answering")
            where = os.environ.get(runs.COMMAND_LOG_ENV, "run with --verbose for details")
            self.stop(RETRY_LATER, f"{runs.one_line(err)} (retry later; log: {where})")
        return []

    def forget(self, tasks):
        """Asks luigid to drop those of ``tasks`` that are done (``RfScheduler.forget_done``),
        so that what it holds of the backfill stays within the bound; failed ones stay, for
        their links. A luigid without the call (plain ``luigid``) keeps them ``remove_delay``."""
        from luigi.rpc import RemoteScheduler

        if self.local_scheduler or luigi.interface.core().local_scheduler:
            return
        ids = [task.task_id for task in tasks]
        try:
            RemoteScheduler(scheduler_url())._request("/api/forget_done", {"task_ids": ids})
        except Exception as err:  # noqa: BLE001 - the backfill goes on; luigid keeps them
            log.warning("luigid did not forget %d finished tasks: %s", len(ids), err)

    def add(self, err):
        self.lines += err.lines
        self.failures += err.failures
        self.summaries.append(err.summary)
        self.codes.append(err.exit_code)

    def stop(self, code, line):
        self.lines.append(line)
        self.codes.append(code)

    @property
    def stopped(self):
        return bool(self.codes) and self.codes[-1] not in _GO_ON

    @property
    def exit_code(self):
        """The code that stopped the backfill, else 3 when a day failed, else 7."""
        if self.stopped:
            return self.codes[-1]
        return TASK_FAILED if TASK_FAILED in self.codes else max(self.codes, default=0)


def import_range(source, days, local_scheduler=None, workers=1, bound=None):
    """Imports ``days`` (a backfill: each day checked on itself), a window at a time.

    Args:
        source: the source's name.
        days: the days to import, in order (complete days already left out).
        local_scheduler, workers: as ``runner.build``.
        bound: most tasks luigid holds at once (default the ``backfill_tasks`` setting).

    Raises:
        BuildFailed: a day failed, or the backfill stopped; ``lines`` and ``failures`` are
            those of every window, ``exit_code`` as ``_Builds.exit_code``. The failures are
            sent in one notification (``[RfNotify]``).
    """
    bound = bound or config.settings().backfill_tasks
    builds = _Builds(local_scheduler, workers)
    try:
        chunks = windows(list(days), bound)
        for number, window in enumerate(chunks, 1):
            log.info(
                "backfill %s: window %d/%d, %s..%s (%d days)",
                *(source, number, len(chunks), window[0], window[-1], len(window)),
            )
            _import_window(builds, source, window, bound)
            if builds.stopped:
                break
    finally:
        if builds.failures:
            what = f"backfill {source} {days[0]}..{days[-1]}"
            summary = "\n\n".join(builds.summaries)
            notifications.send(*notifications.failure_report(what, builds.failures, summary))
    if builds.exit_code:
        raise BuildFailed(
            "\n\n".join(builds.summaries),
            exit_code=builds.exit_code,
            lines=builds.lines,
            failures=builds.failures,
        )


def _import_window(builds, source, window, bound):
    """Discovers the window's days, then imports those discovered in groups that fit the
    bound, luigid forgetting each build's finished tasks; stops at the first build that
    stops the backfill."""
    discoveries = [DiscoverDay(source=source, day=d, run_day=d) for d in window]
    failed = _days_of(builds.run(discoveries))
    builds.forget(discoveries)  # each group's are added again, done, as its days' inputs
    if builds.stopped:
        return
    with db.connect(config.settings().database_url) as conn:
        counts = imports.discovered_counts(conn, source, window)
    for group in groups([d for d in window if d not in failed], counts, bound):
        builds.run([ImportDay(source=source, day=d, run_day=d) for d in group])
        builds.forget([task for d in group for task in _tasks_of(source, d, counts.get(d))])
        if builds.stopped:
            return


def _tasks_of(source, day, discovered):
    """A backfilled day's tasks: DiscoverDay, ImportDay and its batches."""
    params = {"source": source, "day": day, "run_day": day}
    batches = tasks_of_day(BATCH_SIZE if discovered is None else discovered) - 2
    return [
        DiscoverDay(**params),
        ImportDay(**params),
        *(ImportBatch(**params, batch=n) for n in range(batches)),
    ]


def _days_of(failures):
    """The days whose discovery failed (their import would only fail again)."""
    return {
        datetime.date.fromisoformat(f["params"]["day"])
        for f in failures
        if f.get("family") == DiscoverDay.get_task_family() and "day" in f.get("params", {})
    }
