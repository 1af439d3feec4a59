"""Running tasks: luigi.build that raises, with one line per failed task, instead of
returning a bool."""

import logging
import os
import time
import urllib.request

import luigi
import luigi.execution_summary
import luigi.interface

from rf_pipelines import config, operations, runs
from rf_pipelines import notify as notifications
from rf_pipelines.errors import (
    ALREADY_RUNNING,
    BAD_INPUT,
    MISSING_EXTERNAL,
    NOT_RUN,
    RETRY_LATER,
    SCHEDULING_FAILED,
    TASK_FAILED,
    BuildFailed,
    ServiceUnavailable,
)
from rf_pipelines.routing import RoleWorkerFactory, role_of

log = logging.getLogger(__name__)

_OK = {
    luigi.execution_summary.LuigiStatusCode.SUCCESS,
    luigi.execution_summary.LuigiStatusCode.SUCCESS_WITH_RETRY,
}


def scheduler_url():
    """The luigid URL clients use (``config.scheduler_url``)."""
    return config.scheduler_url()


def scheduler_running():
    """True when luigid answers at ``scheduler_url()``."""
    try:
        # A static page: cheap however many tasks luigid holds (task_list serialises them).
        with urllib.request.urlopen(scheduler_url() + "/static/visualiser/index.html", timeout=5):
            return True
    except OSError:
        return False


def build(tasks, local_scheduler=None, workers=1, notify=True, roles=None):
    """Runs tasks and their dependencies; completed ones are skipped.

    Each run gets a folder (``runs.start``) where tasks, in this process or forked ones,
    record their failures and logs; a run with failures sends one notification listing
    them all (``notify``), when ``[RfNotify]`` configures a channel.

    Args:
        tasks: luigi tasks.
        local_scheduler: True runs with the in-process scheduler, False with luigid, None as
            ``[core] local_scheduler`` in luigi.cfg says (luigid by default).
        workers: worker processes.
        roles: run only the tasks of these roles (``routing``); None runs every task.

    Returns:
        luigi's LuigiRunResult.

    Raises:
        ServiceUnavailable: luigid is to be used and does not answer.
        BuildFailed: the run did not complete. ``lines`` has one line per failed task (what,
            why, where its log is); ``exit_code`` tells which outcome (see ``exit_code``;
            2 when every failure is a bad parameter or setting, 75 when every failure is
            transient, so that a later run may succeed).
    """
    if local_scheduler is None:
        local_scheduler = luigi.interface.core().local_scheduler
    if not local_scheduler and not scheduler_running():
        # Never a silent fall-back to the in-process scheduler: without luigid, two runs of
        # one upload would both do the work, and reap would not see what workers hold.
        raise ServiceUnavailable(
            f"luigid at {scheduler_url()} does not answer; start it (rf-pipelines services "
            "start, or rf-pipelines scheduler) or run in-process with --local-scheduler"
        )
    run = runs.start()
    params = {"detailed_summary": True, "local_scheduler": local_scheduler, "workers": workers}
    if not local_scheduler:
        params["scheduler_url"] = scheduler_url()
        os.environ[runs.LOGS_URL_ENV] = runs.LOGS_PATH
        _prune_dead_workers()
    if roles:
        params["worker_scheduler_factory"] = RoleWorkerFactory(roles)

    def run_luigi():
        try:
            return luigi.build(list(tasks), **params)
        except BaseException:
            # luigid went away for longer than the worker's RPC retries, say: what the run's
            # tasks claimed is put back all the same (once luigid can say nobody works on it).
            if not local_scheduler:
                _release_claims(tasks)
            raise

    try:
        result = run_luigi()
        code = exit_code(result, roles)
        held = []
        if code and not local_scheduler:
            result, code, held = _take_over_freed(result, code, run_luigi, roles)
    finally:
        os.environ.pop(runs.ENV, None)
        os.environ.pop(runs.LOGS_URL_ENV, None)
    held = held if code == TASK_FAILED else []
    elsewhere = []
    if code in (NOT_RUN, ALREADY_RUNNING) and not local_scheduler:
        code, elsewhere = _shared_outcome(tasks, code)
    if code and not local_scheduler:
        _release_claims([*tasks, *result.worker._scheduled_tasks.values()])
    # A task that failed in both passes is reported once, as it failed last.
    failures = list({f["task_id"]: f for f in runs.failures(run)}.values()) if code else []
    if code in (TASK_FAILED, SCHEDULING_FAILED):
        failures += _failed_outside_run(result, {f["task_id"] for f in failures})
    # A batch that failed only because of its files' failures, which their steps recorded,
    # is reported through them; any other reason of the batch is reported too.
    covered = {f.get("within") for f in failures}
    failures = [f for f in failures if not (f.get("per_file") and f["task_id"] in covered)]
    for failure in failures:
        if not local_scheduler:
            failure["visualiser"] = visualiser_url(failure.get("within") or failure["task_id"])
    if failures and notify:
        notifications.send(*notifications.failure_report(run.name, failures, result.summary_text))
    if code:
        raise BuildFailed(
            result.summary_text,
            exit_code=_refined(code, failures),
            lines=[failure_line(f) for f in failures] + ([_held_line(held)] if held else [])
            or [_outcome_line(result, code, elsewhere)],
            failures=failures,
        )
    return result


def _release_claims(tasks):
    """A run that ended unfinished puts back the rows its tasks (the requested ones and those
    luigi scheduled for them) claimed that no task in luigid works on
    (``operations.release``): none stays PROCESSING, INGESTING or RUNNING for nobody.
    (In-process, what other runs do is unknown: their rows are left to the next run and
    ``reap``.)"""
    claims = set()
    for task in tasks:
        claim = task.claim() if callable(getattr(task, "claim", None)) else None
        if claim:
            claims.add(claim)
    try:
        operations.release(config.settings().database_url, scheduler_url(), claims)
    except Exception as err:  # noqa: BLE001 - the run's own outcome is what matters here
        log.error("could not release what this run left unfinished: %s (reap will)", err)


def _prune_dead_workers():
    """Asks luigid to drop workers silent for longer than its worker_disconnect_delay before
    this run schedules: the tasks a killed worker was running become FAILED, so this run
    takes them over (luigid's own pruning runs once a minute)."""
    from luigi.rpc import RemoteScheduler

    try:
        RemoteScheduler(scheduler_url()).prune()
    except Exception as err:  # noqa: BLE001 - the run goes on; luigid prunes on its own tick
        log.warning("luigid did not prune dead workers: %s", err)


# How long a host waits for the tasks another worker holds: a live holder's at most
# PATIENCE_S from when the wait starts (a task of its own may run for an hour: this run then
# exits 7); a silent one's until luigid drops it (WORKER_DISCONNECT_DELAY_S after its last
# ping), so that a dead worker's task is taken over. The waits of one run, between its
# passes, last at most MAX_WAIT_S in all.
PATIENCE_S = 20
MAX_WAIT_S = 120
# A worker pings luigid every second ([core] worker-ping-interval); one whose last activity
# has not moved for this long, as this run sees it, is taken for dead.
SILENT_S = 3


def _take_over_freed(result, code, run_luigi, roles):
    """Waits for the run's tasks another worker holds in luigid, and schedules the run again
    each time one of them is let go: done (what depends on it may now run, here or there),
    or unfinished (its worker died and luigid dropped it; a task with dynamic requirements
    went back to pending), which this run then takes over. So a run does not end while the
    others' share still moves, nor with rows claimed by nobody while a worker is here to do
    the work. Returns (result, code, ids still held) of the last pass."""
    waited = 0.0
    held = _held_elsewhere(result)
    while held and waited < MAX_WAIT_S:
        before, started = held, time.monotonic()
        held = _wait_for_held(result, started + MAX_WAIT_S - waited)
        waited += time.monotonic() - started
        let_go = [i for i in before if i not in held]
        if not let_go:
            break
        scheduled = result.worker._scheduled_tasks
        freed = sorted(i for i in let_go if not _done(scheduled[i]))
        if freed:
            log.info("taking over what no worker runs any more: %s", ", ".join(freed))
        else:
            log.info("scheduling again, done elsewhere: %s", ", ".join(sorted(let_go)))
        result = run_luigi()
        code = exit_code(result, roles)
        held = _held_elsewhere(result) if code else {}
    return result, code, sorted(held)


def _held_elsewhere(result):
    """{task id: (worker id, its last activity in luigid)} of the run's tasks that luigid has
    RUNNING on another worker (or on a dead one, until luigid drops it
    WORKER_DISCONNECT_DELAY_S after its last ping: luigid's worker list prunes first)."""
    from luigi.rpc import RemoteScheduler

    try:
        workers = RemoteScheduler(scheduler_url()).worker_list()
    except Exception:  # noqa: BLE001 - luigid away: what it runs is unknown, say nothing
        return {}
    mine = result.worker._scheduled_tasks
    return {
        task_id: (worker["name"], worker["last_active"])
        for worker in workers
        if worker["name"] != result.worker._id
        for task_id in worker.get("running") or {}
        if task_id in mine
    }


def _done(task):
    try:
        return task.complete()
    except Exception:  # noqa: BLE001 - unknown counts as not done
        return False


def _wait_for_held(result, until):
    """Waits while luigid has tasks of this run RUNNING on another worker: at most
    PATIENCE_S while every holder is alive, longer (until ``until``, a monotonic time) while
    one is silent, which luigid is about to drop. Returns what is still held, as
    ``_held_elsewhere``."""
    patience = time.monotonic() + PATIENCE_S
    changed = {}  # worker id: (its last activity, when this run saw it change)
    held = _held_elsewhere(result)
    if held:
        log.info("waiting for tasks another worker runs: %s", ", ".join(sorted(held)))
    while held and time.monotonic() < until:
        now = time.monotonic()
        for worker, last_active in held.values():
            if changed.get(worker, (None,))[0] != last_active:
                changed[worker] = (last_active, now)
        silent = [w for w, _ in held.values() if now - changed[w][1] >= SILENT_S]
        if now >= patience and not silent:
            break
        time.sleep(1)
        held = _held_elsewhere(result)
    if held:
        log.info("stopped waiting; still running on other workers: %s", ", ".join(sorted(held)))
    return held


def _held_line(held):
    shown = ", ".join(held[:5]) + (" ..." if len(held) > 5 else "")
    return (
        f"already running on another worker, or left by one, so this is not the end (see "
        f"luigid); run the same command again when it ends: {shown}"
    )


def _shared_outcome(tasks, code):
    """(code, task ids) of a run that shared its work with another worker through luigid:
    done (0) when the requested tasks are complete now, whoever ran them; TASK_FAILED with
    the tasks luigid holds failed when the other run failed (nothing runs any more); else
    ALREADY_RUNNING. luigid gives a task to one worker only, and a worker told nothing to
    run ends NOT_RUN (luigi: "not granted run permission") although the other one is doing
    the work."""
    try:
        if all(task.complete() for task in tasks):
            return 0, []
    except Exception:  # noqa: BLE001 - the check itself failed: report what luigi saw
        return code, []
    failed = _failed_in_luigid(tasks)
    return (TASK_FAILED, failed) if failed else (ALREADY_RUNNING, [])


def _failed_in_luigid(tasks):
    """The ids of tasks in the requested graphs that luigid holds FAILED or DISABLED."""
    from luigi.rpc import RemoteScheduler

    luigid = RemoteScheduler(scheduler_url())
    failed = set()
    for task in tasks:
        try:
            graph = luigid.dep_graph(task.task_id)
        except Exception:  # noqa: BLE001 - luigid's answer is a refinement, not a must
            continue
        failed |= {i for i, t in graph.items() if t.get("status") in ("FAILED", "DISABLED")}
    return sorted(failed)


def _failed_outside_run(result, recorded):
    """Failures luigi saw that no task recorded: a task outside this package, or one whose
    process died (killed, out of memory, timed out) before it could say why."""
    summary = luigi.execution_summary._summary_dict(result.worker)
    return [
        {
            "task_id": t.task_id,
            "family": t.task_family,
            "error": "failed outside run(), or its worker died; see the command's log",
            "kind": "error",
            "phase": "schedule",
            "params": t.to_str_params(only_significant=True),
            "log": os.environ.get(runs.COMMAND_LOG_ENV, "-"),
        }
        for t in sorted(summary["failed"] | summary["scheduling_error"], key=lambda t: t.task_id)
        if t.task_id not in recorded
    ]


def _refined(code, failures):
    """A failed run's exit code, told apart by what its failures have in common."""
    kinds = {(f.get("kind"), f.get("phase")) for f in failures}
    if not failures or code not in (TASK_FAILED, SCHEDULING_FAILED):
        return code
    if all(kind == "transient" for kind, _ in kinds):
        return RETRY_LATER
    if all(kind == "config" or (kind, phase) == ("permanent", "schedule") for kind, phase in kinds):
        return BAD_INPUT
    return code


def failure_line(failure):
    """One line for a failed task: what failed, why, and where its log is."""
    params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(failure.get("params", {}).items()))
    return f"{failure['family']}({params}) failed: {failure['error']} (log: {failure['log']})"


def _short(value, limit=60):
    value = str(value)
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _outcome_line(result, code, elsewhere=()):
    """The line of a run that did not complete although none of its own tasks failed."""
    if elsewhere:
        shown = ", ".join(elsewhere[:5]) + (" ..." if len(elsewhere) > 5 else "")
        return f"failed in another run sharing this work (see luigid): {shown}"
    summary = luigi.execution_summary._summary_dict(result.worker)
    what = {
        ALREADY_RUNNING: ("already running on another worker", "run_by_other_worker"),
        MISSING_EXTERNAL: ("external data missing", "still_pending_ext"),
        NOT_RUN: ("not run", "not_run"),
        SCHEDULING_FAILED: ("could not be scheduled", "scheduling_error"),
    }
    label, key = what.get(code, (result.one_line_summary.strip(), None))
    tasks = sorted(t.task_id for t in summary.get(key, ())) if key else []
    return f"{label}: {', '.join(tasks[:5])}{' ...' if len(tasks) > 5 else ''}".rstrip(": ")


def visualiser_url(task_id):
    """The task's graph in luigid's visualiser."""
    return f"{scheduler_url()}/static/visualiser/index.html#tab=graph&taskId={task_id}"


def exit_code(result, roles=None):
    """0, or the code of the first problem: a task failed, scheduling failed, a task is
    already being run by another worker, external data is missing, something did not run.
    A worker with roles succeeds when what is left belongs to other roles' workers."""
    if roles and _only_other_roles_left(result, roles):
        return 0
    if result.status in _OK:
        summary = luigi.execution_summary._summary_dict(result.worker)
        return ALREADY_RUNNING if summary["run_by_other_worker"] else 0
    codes = luigi.execution_summary.LuigiStatusCode
    return {
        codes.FAILED: TASK_FAILED,
        codes.FAILED_AND_SCHEDULING_FAILED: TASK_FAILED,
        codes.SCHEDULING_FAILED: SCHEDULING_FAILED,
        codes.NOT_RUN: NOT_RUN,
        codes.MISSING_EXT: MISSING_EXTERNAL,
    }.get(result.status, 1)


def _only_other_roles_left(result, roles):
    summary = luigi.execution_summary._summary_dict(result.worker)
    if summary["failed"] or summary["scheduling_error"]:
        return False
    left = (
        summary["still_pending_ext"]
        | summary["still_pending_not_ext"]
        | summary["run_by_other_worker"]
        | summary["not_run"]
    )
    return all(role_of(task) not in roles for task in left)
