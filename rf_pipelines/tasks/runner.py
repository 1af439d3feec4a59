"""Running tasks: luigi.build that raises with luigi's summary instead of returning a bool."""

import urllib.request

import luigi
import luigi.execution_summary
import luigi.interface

from rf_pipelines.errors import BuildFailed

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


def build(tasks, local_scheduler=None, workers=1):
    """Runs tasks and their dependencies; completed ones are skipped.

    Args:
        tasks: luigi tasks.
        local_scheduler: True forces the in-process scheduler, False forces luigid, None uses
            luigid when it answers and the local scheduler otherwise.
        workers: worker processes.

    Returns:
        luigi's LuigiRunResult.

    Raises:
        BuildFailed: any task failed or could not be scheduled; the message is luigi's summary.
    """
    if local_scheduler is None:
        local_scheduler = not scheduler_running()
    failures = []

    def on_failure(task, error):
        failures.append(f"{task.task_id}: {type(error).__name__}: {error}")

    luigi.Task.event_handler(luigi.Event.FAILURE)(on_failure)
    try:
        result = luigi.build(
            list(tasks), detailed_summary=True, local_scheduler=local_scheduler, workers=workers
        )
    finally:
        luigi.Task._event_callbacks[luigi.Task][luigi.Event.FAILURE].discard(on_failure)
    if result.status not in _OK:
        # luigi's summary names the failed tasks; the errors (from tasks run in this
        # process) say why.
        reasons = "".join(f"\nfailed: {line}" for line in failures)
        raise BuildFailed(result.summary_text + reasons, exit_code=_exit_code(result.status))
    return result


def _exit_code(status):
    codes = luigi.execution_summary.LuigiStatusCode
    return {
        codes.FAILED: 3,
        codes.FAILED_AND_SCHEDULING_FAILED: 3,
        codes.SCHEDULING_FAILED: 4,
        codes.NOT_RUN: 5,
        codes.MISSING_EXT: 6,
    }.get(status, 1)
