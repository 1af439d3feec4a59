"""Running tasks: luigi.build that raises with luigi's summary instead of returning a bool."""

import os
import urllib.request

import luigi
import luigi.execution_summary
import luigi.interface

from rf_pipelines import notify as notifications
from rf_pipelines import runs
from rf_pipelines.errors import BuildFailed
from rf_pipelines.routing import RoleWorkerFactory, role_of

_OK = {
    luigi.execution_summary.LuigiStatusCode.SUCCESS,
    luigi.execution_summary.LuigiStatusCode.SUCCESS_WITH_RETRY,
}


def scheduler_url():
    """The luigid URL that luigi.cfg's ``[core]`` section names."""
    core = luigi.interface.core()
    return (core.scheduler_url or f"http://{core.scheduler_host}:{core.scheduler_port}").rstrip("/")


def scheduler_running():
    """True when luigid answers at ``scheduler_url()``."""
    try:
        with urllib.request.urlopen(scheduler_url() + "/api/task_list?data=%7B%7D", timeout=2):
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
        local_scheduler: True forces the in-process scheduler, False forces luigid, None uses
            luigid when it answers and the local scheduler otherwise.
        workers: worker processes.
        roles: run only the tasks of these roles (``routing``); None runs every task.

    Returns:
        luigi's LuigiRunResult.

    Raises:
        BuildFailed: any task failed, could not be scheduled, is already being run by
            another worker, or lacks external data; the message is luigi's summary and each
            failed task's error; ``exit_code`` tells which.
    """
    if local_scheduler is None:
        local_scheduler = not scheduler_running()
    run = runs.start()
    try:
        extra = {"worker_scheduler_factory": RoleWorkerFactory(roles)} if roles else {}
        result = luigi.build(
            list(tasks),
            detailed_summary=True,
            local_scheduler=local_scheduler,
            workers=workers,
            **extra,
        )
    finally:
        os.environ.pop(runs.ENV, None)
    failures = runs.failures(run)
    code = exit_code(result, roles)
    if notify and not failures and code in (TASK_FAILED, SCHEDULING_FAILED):
        # Failed outside run() (complete(), requires(), scheduling): luigi's summary says which.
        summary = luigi.execution_summary._summary_dict(result.worker)
        failures = [
            {
                "task_id": t.task_id,
                "family": t.task_family,
                "error": "failed outside run()",
                "params": t.to_str_params(only_significant=True),
                "log": "-",
            }
            for t in summary["failed"] | summary["scheduling_error"]
        ]
        if failures:
            report = notifications.failure_report(run.name, failures, result.summary_text)
            notifications.send(*report)
        failures = []
    if failures and notify:
        for failure in failures:
            if not local_scheduler:
                failure["visualiser"] = visualiser_url(failure["task_id"])
        notifications.send(*notifications.failure_report(run.name, failures, result.summary_text))
    if code:
        reasons = "".join(
            f"\nfailed: {f['task_id']}: {f['error']} (log: {f['log']})" for f in failures
        )
        raise BuildFailed(result.summary_text + reasons, exit_code=code)
    return result


def visualiser_url(task_id):
    """The task's graph in luigid's visualiser."""
    return f"{scheduler_url()}/static/visualiser/index.html#tab=graph&taskId={task_id}"


# Exit codes of a run that did not complete (0 when it did).
TASK_FAILED, SCHEDULING_FAILED, NOT_RUN, MISSING_EXTERNAL, ALREADY_RUNNING = 3, 4, 5, 6, 7


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
