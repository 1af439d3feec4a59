"""Steps that run as ECS task definitions: containers with their own dependencies.

Unlike luigi.contrib.ecs.ECSTask, a step here fails when any container exits non-zero (or
never started), copies the containers' CloudWatch log lines into the task's own log, and
stops the ECS task when the luigi task is killed (SIGTERM) or runs past its timeout.
Cluster, launch type and Fargate network settings come from ``[RfEcs]`` in luigi.cfg.
"""

import json
import logging
import signal
import time

import luigi

from rf_pipelines import clients
from rf_pipelines.errors import ConfigError, PermanentError, RfError, TransientError
from rf_pipelines.tasks.base import RfTask

log = logging.getLogger(__name__)


class RfEcs(luigi.Config):
    """Where ECS steps run (``[RfEcs]`` in luigi.cfg)."""

    cluster = luigi.Parameter(default="default", description="ECS cluster name or ARN.")
    launch_type = luigi.Parameter(default="FARGATE", description="FARGATE or EC2.")
    subnets = luigi.Parameter(default="", description="Comma-separated subnet ids (awsvpc).")
    security_groups = luigi.Parameter(default="", description="Comma-separated group ids.")
    assign_public_ip = luigi.BoolParameter(default=False, description="Fargate public IP.")
    poll_seconds = luigi.FloatParameter(default=5.0, description="Seconds between checks.")


class EcsTaskFailed(PermanentError):
    """A container exited non-zero, or the task stopped without running its containers."""


class EcsStepStopped(RfError):
    """The step was killed or timed out; its ECS task was stopped. Never retried inside the
    step (a kill arriving during an API call must not be mistaken for a transient error)."""


class EcsTask(RfTask):
    """Runs ``task_definition()`` with ``command()`` and ``environment()`` overrides for
    ``container()``, waits for it to stop, and checks every container's exit code."""

    workflow = "containers"
    timeout = luigi.FloatParameter(default=3600, significant=False, description="Seconds.")

    def task_definition(self):
        """Family, family:revision or ARN."""
        raise NotImplementedError

    def container(self):
        """The container whose command and environment are overridden."""
        raise NotImplementedError

    def command(self):
        return None

    def environment(self):
        return {}

    def object_id(self):
        return self.task_id

    def output(self):
        return self.file_target("ecs-task.json")

    def overrides(self):
        override = {"name": self.container()}
        if self.command() is not None:
            override["command"] = [str(c) for c in self.command()]
        if self.environment():
            override["environment"] = [
                {"name": k, "value": str(v)} for k, v in self.environment().items()
            ]
        return {"containerOverrides": [override]}

    def run(self):
        cfg = RfEcs()
        ecs = clients.aws_client("ecs")
        arn = self._start(ecs, cfg)
        previous = signal.getsignal(signal.SIGTERM)
        self._killed = False

        def killed(signum, frame):
            # Only a flag: an exception raised here could land inside logging or an HTTP
            # call and be swallowed there. The wait loop stops the ECS task and raises.
            self._killed = True

        signal.signal(signal.SIGTERM, killed)
        try:
            task = self._wait(ecs, cfg, arn)
        finally:
            signal.signal(signal.SIGTERM, previous)
        self._copy_logs(ecs, task)
        check_exit_codes(task)
        with self.output().open("w") as out:
            summary = {
                "task_arn": arn,
                "containers": {c["name"]: c.get("exitCode") for c in task["containers"]},
                "written_by": self.written_by,
            }
            out.write(json.dumps(summary).encode())

    def _start(self, ecs, cfg):
        kwargs = {
            "cluster": cfg.cluster,
            "taskDefinition": self.task_definition(),
            "launchType": cfg.launch_type,
            "count": 1,
            "startedBy": "rf-pipelines",
            "overrides": self.overrides(),
        }
        subnets = [s.strip() for s in cfg.subnets.split(",") if s.strip()]
        if subnets:
            kwargs["networkConfiguration"] = {
                "awsvpcConfiguration": {
                    "subnets": subnets,
                    "securityGroups": [
                        g.strip() for g in cfg.security_groups.split(",") if g.strip()
                    ],
                    "assignPublicIp": "ENABLED" if cfg.assign_public_ip else "DISABLED",
                }
            }
        elif cfg.launch_type == "FARGATE" and _needs_network(ecs, self.task_definition()):
            raise ConfigError("[RfEcs] subnets is empty: a Fargate (awsvpc) task needs subnets")
        response = self.retry(ecs.run_task, **kwargs)
        if response.get("failures") or not response.get("tasks"):
            reasons = "; ".join(
                f"{f.get('arn', '')} {f.get('reason')}" for f in response["failures"]
            )
            raise TransientError(f"ECS could not start {self.task_definition()}: {reasons}")
        arn = response["tasks"][0]["taskArn"]
        log.info("started ECS task %s (%s)", arn, self.task_definition())
        self.report_progress(f"ECS task {arn.rsplit('/', 1)[-1]} started", 5)
        return arn

    def _wait(self, ecs, cfg, arn):
        deadline = time.monotonic() + self.timeout
        while True:
            if self._killed:
                _stop(ecs, cfg.cluster, arn, "rf-pipelines: the luigi task was killed")
                raise EcsStepStopped(f"{self.task_id} was killed; ECS task {arn} stopped")
            task = self.retry(ecs.describe_tasks, cluster=cfg.cluster, tasks=[arn])["tasks"][0]
            if task["lastStatus"] == "STOPPED" and not self._killed:
                return task
            if time.monotonic() > deadline:
                _stop(ecs, cfg.cluster, arn, "rf-pipelines: timed out")
                raise EcsStepStopped(
                    f"{self.task_id} ran past its timeout of {self.timeout:g} s; "
                    f"ECS task {arn} stopped"
                )
            self.report_progress(f"ECS task {task['lastStatus']}", 50)
            time.sleep(cfg.poll_seconds)

    def _copy_logs(self, ecs, task):
        """Copies each container's awslogs stream into this task's log."""
        definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])
        logs = clients.aws_client("logs")
        task_id = task["taskArn"].rsplit("/", 1)[-1]
        for container in definition["taskDefinition"]["containerDefinitions"]:
            options = (container.get("logConfiguration") or {}).get("options") or {}
            if (container.get("logConfiguration") or {}).get("logDriver") != "awslogs":
                continue
            group = options.get("awslogs-group")
            stream = f"{options.get('awslogs-stream-prefix')}/{container['name']}/{task_id}"
            try:
                pages = _log_events(logs, group, stream)
                for event in pages:
                    log.info("%s: %s", container["name"], event["message"])
            except logs.exceptions.ResourceNotFoundException:
                log.warning("no CloudWatch log stream %s in %s", stream, group)


def check_exit_codes(task):
    """Raises when a container of a stopped ECS task exited non-zero or never ran.

    Raises:
        EcsTaskFailed: naming each such container, its exit code and reason.
    """
    bad = []
    for container in task.get("containers", []):
        code = container.get("exitCode")
        if code != 0:
            reason = container.get("reason") or task.get("stoppedReason") or "no exit code"
            bad.append(f"{container.get('name')} exited with {code} ({reason})")
    if bad:
        raise EcsTaskFailed(f"ECS task {task.get('taskArn')}: " + "; ".join(bad))


def _log_events(logs, group, stream):
    token = None
    while True:
        kwargs = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
        if token:
            kwargs["nextToken"] = token
        page = logs.get_log_events(**kwargs)
        yield from page["events"]
        if not page["events"] or page.get("nextForwardToken") in (None, token):
            return
        token = page["nextForwardToken"]


def _stop(ecs, cluster, arn, reason):
    try:
        ecs.stop_task(cluster=cluster, task=arn, reason=reason)
        log.warning("stopped ECS task %s: %s", arn, reason)
    except Exception as err:  # noqa: BLE001 - stopping is best effort; the error is logged
        log.error("could not stop ECS task %s: %s", arn, err)


def _needs_network(ecs, task_definition):
    described = ecs.describe_task_definition(taskDefinition=task_definition)
    return described["taskDefinition"].get("networkMode") == "awsvpc"
