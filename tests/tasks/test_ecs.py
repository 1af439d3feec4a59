"""ECS steps against moto's server: overrides, CloudWatch log lines copied into the task's
log, the ECS task stopped on timeout and on SIGTERM, exit codes checked.

moto's ECS never runs containers: its tasks go RUNNING -> ... -> STOPPED as the test's state
transitions say, and every container reports exit code 0. The non-zero case is checked on a
real moto response with the code changed (test_a_non_zero_exit_code_fails_the_step)."""

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import luigi
import pytest

from rf_pipelines import clients
from rf_pipelines.errors import BuildFailed
from rf_pipelines.runs import log_url
from rf_pipelines.targets import files
from rf_pipelines.tasks.ecs import EcsTask, EcsTaskFailed, check_exit_codes
from rf_pipelines.tasks.runner import build

CLUSTER = "rf-test"
FAMILY = f"rf-hello-{uuid.uuid4().hex[:6]}"
LOG_GROUP = "/rf-pipelines/test"


class Hello(EcsTask):
    """Runs the hello task definition with a command override."""

    word = luigi.Parameter()

    def task_definition(self):
        return FAMILY

    def container(self):
        return "main"

    def command(self):
        return ["echo", self.word]

    def environment(self):
        return {"WORD": self.word}


def transitions(progression):
    """Sets how moto's ECS tasks advance (its state manager)."""
    body = json.dumps({"model_name": "ecs::task", "transition": progression}).encode()
    request = urllib.request.Request(
        f"{os.environ['AWS_ENDPOINT_URL']}/moto-api/state-manager/set-transition",
        data=body,
        method="POST",
    )
    urllib.request.urlopen(request).read()


@pytest.fixture()
def ecs(local_services, data_root, luigi_config):
    ecs = clients.aws_client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    ecs.register_task_definition(
        family=FAMILY,
        networkMode="bridge",
        containerDefinitions=[
            {
                "name": "main",
                "image": "busybox",
                "memory": 128,
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": LOG_GROUP,
                        "awslogs-region": "us-east-1",
                        "awslogs-stream-prefix": "rf",
                    },
                },
            }
        ],
    )
    luigi_config("RfEcs", "cluster", CLUSTER)
    luigi_config("RfEcs", "poll_seconds", "0.05")
    yield ecs
    transitions({"progression": "immediate"})


def _task_arns(ecs):
    return set(ecs.list_tasks(cluster=CLUSTER, family=FAMILY)["taskArns"])


def _new_task(ecs, known, timeout=30):
    """The ARN of the ECS task started after ``known`` was listed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = _task_arns(ecs) - known
        if new:
            return new.pop()
        time.sleep(0.02)
    raise AssertionError("no ECS task started")


def _describe(ecs, arn):
    return ecs.describe_tasks(cluster=CLUSTER, tasks=[arn])["tasks"][0]


def test_a_step_runs_with_overrides_and_its_container_logs_are_copied(ecs):
    transitions({"progression": "manual", "times": 20})
    logs = clients.aws_client("logs")
    try:
        logs.create_log_group(logGroupName=LOG_GROUP)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass

    known = _task_arns(ecs)

    def container_writes_its_log():  # what the awslogs driver would do
        arn = _new_task(ecs, known)
        stream = f"rf/main/{arn.rsplit('/', 1)[-1]}"
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        now = int(time.time() * 1000)
        events = [{"timestamp": now + i, "message": f"line {i} of the container"} for i in range(3)]
        logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events)

    writer = threading.Thread(target=container_writes_its_log)
    writer.start()
    task = Hello(word="tiles")
    build([task])
    writer.join()
    summary = json.loads(files.read_bytes(task.output().path))
    assert summary["containers"] == {"main": 0}
    described = _describe(ecs, summary["task_arn"])
    assert described["overrides"]["containerOverrides"][0]["command"] == ["echo", "tiles"]
    assert {"name": "WORD", "value": "tiles"} in described["overrides"]["containerOverrides"][0][
        "environment"
    ]
    text = files.read_bytes(log_url(task)).decode()
    assert "main: line 0 of the container" in text and "main: line 2 of the container" in text


def test_a_step_past_its_timeout_stops_its_ecs_task(ecs):
    transitions({"progression": "manual", "times": 100000})  # never stops on its own
    with pytest.raises(BuildFailed) as err:
        build([Hello(word="slow", timeout=0.5)])
    assert "ran past its timeout of 0.5 s" in str(err.value)
    arn = str(err.value).split("ECS task ")[1].split(" stopped")[0]
    described = _describe(ecs, arn)
    assert described["lastStatus"] == "STOPPED"
    assert described["stoppedReason"] == "rf-pipelines: timed out"


def test_a_killed_step_stops_its_ecs_task(ecs, data_root):
    transitions({"progression": "manual", "times": 100000})
    code = (
        "from tests.tasks.test_ecs import Hello, FAMILY; import tests.tasks.test_ecs as t;"
        f"t.FAMILY = {FAMILY!r};"
        "from rf_pipelines.tasks.runner import build;"
        "build([Hello(word='killed')], local_scheduler=True)"
    )
    env = {
        **os.environ,
        "LUIGI_CONFIG_PATH": _ecs_config(data_root),
        "PYTHONPATH": os.getcwd(),
    }
    known = _task_arns(ecs)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        arn = _new_task(ecs, known)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    described = _describe(ecs, arn)
    assert described["lastStatus"] == "STOPPED"
    assert described["stoppedReason"] == "rf-pipelines: the luigi task was killed"
    assert proc.returncode != 0, proc.stderr.read()[-3000:]


def _ecs_config(data_root):
    import tempfile

    path = tempfile.mktemp(suffix=".cfg")
    base = open(os.environ["LUIGI_CONFIG_PATH"]).read()
    with open(path, "w") as out:
        out.write(base + f"\n[RfEcs]\ncluster = {CLUSTER}\npoll_seconds = 0.05\n")
    return path


def test_a_non_zero_exit_code_fails_the_step(ecs):
    transitions({"progression": "immediate"})
    task = Hello(word="ok")
    build([task])
    arn = json.loads(files.read_bytes(task.output().path))["task_arn"]
    real = _describe(ecs, arn)
    check_exit_codes(real)  # moto's containers exit 0
    failed = copy.deepcopy(real)
    failed["containers"][0].update(exitCode=2, reason="OutOfMemoryError")
    with pytest.raises(EcsTaskFailed, match="main exited with 2 \\(OutOfMemoryError\\)"):
        check_exit_codes(failed)
    never_ran = copy.deepcopy(real)
    never_ran["containers"][0].pop("exitCode")
    never_ran["stoppedReason"] = "CannotPullContainerError"
    with pytest.raises(EcsTaskFailed, match="main exited with None \\(CannotPullContainerError\\)"):
        check_exit_codes(never_ran)
