"""The command line with one fault planted: ``python -m tests.fault_cli FAMILY WHEN -- ARGS``.

The step ``FAMILY`` raises ``InjectedFault`` the first time it runs in this process, either as
it starts (``WHEN`` = ``start``) or at its first progress report, after it has recorded its
status (``progress``); every other step runs as usual. With ``WHEN`` = ``sleep=SECONDS`` the
step raises nothing: each time it starts it sleeps that long first (a slow job). When the
fault fires, the file named by ``RF_FAULT_FIRED`` gets a line. Used by the fault campaign
(``tests/faults.py``) and the listener's tests.
"""

import inspect
import os
import sys
import time

from rf_pipelines.tasks.base import RfTask


class InjectedFault(RuntimeError):
    """The campaign's planted error: not one of the project's own kinds."""


def plant(family, when):
    fired = []
    pause = float(when.split("=", 1)[1]) if when.startswith("sleep=") else None

    def fire(task):
        if task.task_family != family or (fired and pause is None):
            return
        fired.append(task.task_id)
        with open(os.environ["RF_FAULT_FIRED"], "a") as out:
            out.write(f"{task.task_id} {when}\n")
        if pause is not None:
            time.sleep(pause)
            return
        raise InjectedFault(f"injected fault in {family} ({when})")

    if when == "progress":
        original = RfTask.report_progress

        def report_progress(self, *args, **kwargs):
            fire(self)
            return original(self, *args, **kwargs)

        RfTask.report_progress = report_progress
        return
    from luigi.task_register import Register

    cls = Register.get_task_cls(family)
    if callable(getattr(cls, "work", None)):
        # A step of an upload's file runs inside its batch (process_file): its work, not
        # its run(), is what runs.
        original_work = cls.work

        def work(self):
            fire(self)
            return original_work(self)

        cls.work = work
        return
    original_run = cls.run

    if inspect.isgeneratorfunction(original_run):

        def run(self):
            fire(self)
            return (yield from original_run(self))

    else:

        def run(self):
            fire(self)
            return original_run(self)

    cls.run = run


def main():
    family, when, separator, *args = sys.argv[1:]
    assert separator == "--", (
        "usage: python -m tests.fault_cli FAMILY start|progress|sleep=SECONDS -- ARGS"
    )
    import rf_pipelines.tasks  # noqa: F401 - registers every task family

    plant(family, when)
    from rf_pipelines.cli import cli

    cli(args=args, prog_name="rf-pipelines")


if __name__ == "__main__":
    main()
