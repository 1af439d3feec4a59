"""Shell steps and Python functions as tasks, through luigid."""

import datetime

import luigi
import pytest

from rf_pipelines.errors import BuildFailed
from rf_pipelines.runs import log_url
from rf_pipelines.targets import files
from rf_pipelines.tasks.runner import build
from rf_pipelines.tasks.steps import ShellTask, function_task


class Greet(ShellTask):
    name = luigi.Parameter()
    script = luigi.Parameter(default='echo "hello $WHO"; echo "a warning" >&2')

    def command(self):
        return ["bash", "-c", self.script]

    def environment(self):
        return {"WHO": self.name}


def test_a_shell_step_captures_its_output_into_the_task_log(data_root):
    task = Greet(name="operators")
    build([task])
    with task.output().open("r") as out:
        assert out.read() == b"hello operators\n"
    text = files.read_bytes(log_url(task)).decode()
    assert "stdout: hello operators" in text and "stderr: a warning" in text


def test_a_failing_step_names_its_exit_code_and_last_stderr_lines(data_root):
    script = 'for i in $(seq 1 30); do echo "line $i" >&2; done; exit 3'
    with pytest.raises(BuildFailed) as err:
        build([Greet(name="x", script=script)])
    message = str(err.value)
    assert "bash exited with 3" in message
    assert "line 30" in message and "line 11" in message and "line 10\n" not in message
    assert err.value.exit_code == 3


def test_a_step_past_its_timeout_is_killed(data_root):
    with pytest.raises(BuildFailed) as err:
        build([Greet(name="x", script="sleep 30", timeout=0.5)])
    assert "ran past its timeout of 0.5 s" in str(err.value)


CALLS = []


@function_task(workflow="reports")
def count_letters(word: str, day: datetime.date, times: int = 2) -> dict:
    """A plain function; the decorator makes it a task with a JSON output."""
    CALLS.append(word)
    return {"word": word, "letters": len(word) * times, "day": day}


def test_a_function_becomes_a_task_that_runs_once(data_root):
    CALLS.clear()
    task = count_letters(word="landsat", day=datetime.date(2024, 5, 1))
    assert type(task).__name__ == "CountLetters" and task.times == 2
    build([task], local_scheduler=True)
    build([task], local_scheduler=True)
    assert CALLS == ["landsat"]
    assert task.result() == {"word": "landsat", "letters": 14, "day": "2024-05-01"}
    assert "/reports/" in task.output().path


def test_an_unannotated_parameter_is_refused():
    with pytest.raises(TypeError, match="annotate it"):

        @function_task()
        def bad(thing):
            return thing
