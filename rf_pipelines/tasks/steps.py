"""Task bases for steps that are not Python classes of their own: shell scripts, and plain
Python functions turned into tasks.

ShellTask runs a script with arguments, environment and a timeout; its output goes into the
task's log; a non-zero exit fails the task with the last lines of stderr in the message.

``function_task`` makes a Task class from a function: the function's parameters become
luigi parameters, and its return value (JSON) is written to the task's output file, so a
completed call is skipped on rerun::

    @function_task(workflow="reports")
    def count_scenes(day: datetime.date, source: str = "sentinel2") -> dict:
        ...

    build([count_scenes(day=datetime.date(2024, 5, 1))])
"""

import datetime
import inspect
import json
import logging
import os
import subprocess

import luigi

from rf_pipelines.errors import PermanentError, TransientError
from rf_pipelines.tasks.base import RfTask

log = logging.getLogger(__name__)
STDERR_LINES = 20


class StepFailed(PermanentError):
    """A shell step exited non-zero."""


class StepTimedOut(TransientError):
    """A shell step ran past its timeout (it was killed)."""


class ShellTask(RfTask):
    """Runs ``command()`` (a list, no shell) with ``environment()``, at most ``timeout``
    seconds; stdout and stderr go to the task's log."""

    workflow = "steps"
    timeout = luigi.FloatParameter(default=3600, significant=False, description="Seconds.")

    def object_id(self):
        return self.task_id

    def output(self):
        return self.file_target("stdout.txt")

    def command(self):
        """The argv to run, e.g. ``["bash", "scripts/x.sh", self.day.isoformat()]``."""
        raise NotImplementedError

    def environment(self):
        """Variables added to the inherited environment."""
        return {}

    def run(self):
        argv = [str(a) for a in self.command()]
        log.info("running %s", " ".join(argv))
        self.report_progress(f"running {os.path.basename(argv[0])}")
        try:
            done = subprocess.run(
                argv,
                env={**os.environ, **{k: str(v) for k, v in self.environment().items()}},
                capture_output=True,
                text=True,
                timeout=self.timeout,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as err:
            _log_output(err.stdout, err.stderr)
            raise StepTimedOut(f"{argv[0]} ran past its timeout of {self.timeout:g} s") from err
        except FileNotFoundError as err:
            raise StepFailed(f"{argv[0]}: no such program") from err
        _log_output(done.stdout, done.stderr)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or "").strip().splitlines()[-STDERR_LINES:])
            raise StepFailed(f"{argv[0]} exited with {done.returncode}:\n{tail}")
        self.after_success(done.stdout)

    def after_success(self, stdout):
        """Writes the output once the command succeeded (default: its stdout)."""
        with self.output().open("w") as out:
            out.write(stdout.encode())


def _log_output(stdout, stderr):
    for name, text in (("stdout", stdout), ("stderr", stderr)):
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        for line in (text or "").splitlines():
            log.info("%s: %s", name, line)


_PARAMETERS = {
    int: luigi.IntParameter,
    float: luigi.FloatParameter,
    bool: luigi.BoolParameter,
    str: luigi.Parameter,
    datetime.date: luigi.DateParameter,
    datetime.datetime: luigi.DateSecondParameter,
}


def function_task(workflow="functions", version=1, name=None):
    """Turns a function into a Task class whose output is the function's JSON result.

    Every parameter must be annotated with int, float, bool, str, date or datetime (luigi
    needs to know how to parse it); defaults are kept.
    """

    def decorate(fn):
        attrs = {
            "__module__": fn.__module__,
            "__doc__": fn.__doc__,
            "workflow": workflow,
            "version": version,
            "function": staticmethod(fn),
        }
        for pname, param in inspect.signature(fn).parameters.items():
            kind = _PARAMETERS.get(param.annotation)
            if kind is None:
                raise TypeError(
                    f"{fn.__name__}({pname}): annotate it with one of "
                    f"{', '.join(t.__name__ for t in _PARAMETERS)}"
                )
            default = {} if param.default is inspect.Parameter.empty else {"default": param.default}
            attrs[pname] = kind(**default)
        return type(name or _class_name(fn.__name__), (FunctionTask,), attrs)

    return decorate


def _class_name(function_name):
    return "".join(part.capitalize() for part in function_name.split("_"))


class FunctionTask(RfTask):
    """Base of the classes ``function_task`` makes."""

    def object_id(self):
        return self.task_id.split("_", 1)[-1]

    def output(self):
        return self.file_target("result.json")

    def run(self):
        kwargs = {name: getattr(self, name) for name, _ in self.get_params()}
        result = self.function(**kwargs)
        with self.output().open("w") as out:
            out.write(json.dumps(result, default=str).encode())

    def result(self):
        """The function's result, read back from the output."""
        with self.output().open("r") as src:
            return json.loads(src.read())
