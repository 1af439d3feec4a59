"""Routing tasks to workers by role.

Each task has a role: ``spark`` for PySpark jobs, ``containers`` for ECS steps, ``light`` for
the rest; ``[rf_roles]`` in luigi.cfg can move a task family to another role
(``RenderTiles = spark-big``). A worker started with ``--role spark`` tells luigid it can
run only the tasks of that role: it adds the whole graph (so it knows what to wait for) but
marks the other tasks not runnable by it, and luigid hands each task only to a worker that
declared it runnable. Start one worker per role with the same root task; each keeps alive
while tasks it waits on are pending elsewhere.
"""

import luigi
import luigi.interface
import luigi.worker
from luigi.contrib.spark import SparkSubmitTask

from rf_pipelines.errors import ConfigError

ROLES = ("light", "spark", "containers")


def role_of(task):
    """The role a task needs: ``[rf_roles]`` for its family, else by its kind."""
    configured = luigi.configuration.get_config().get("rf_roles", task.task_family, None)
    if configured:
        return configured
    from rf_pipelines.tasks.ecs import EcsTask

    if isinstance(task, SparkSubmitTask):
        return "spark"
    if isinstance(task, EcsTask):
        return "containers"
    return "light"


def parse_roles(value):
    """``spark,light`` -> {"spark", "light"}; ``all`` or empty -> None (every task).

    Raises:
        ConfigError: an unknown role name (roles added in [rf_roles] are known too).
    """
    names = {r.strip() for r in (value or "").split(",") if r.strip()}
    if not names or names == {"all"}:
        return None
    cfg = luigi.configuration.get_config()
    known = set(ROLES) | (
        {v for _, v in cfg.items("rf_roles")} if cfg.has_section("rf_roles") else set()
    )
    unknown = names - known
    if unknown:
        raise ConfigError(f"--role {value!r}: unknown {sorted(unknown)}; roles: {sorted(known)}")
    return names


class RoleWorker(luigi.worker.Worker):
    """A luigi worker that declares runnable only the tasks of its roles."""

    def __init__(self, *args, roles=None, **kwargs):
        self.roles = roles
        super().__init__(*args, **kwargs)

    def _add_task(self, *args, **kwargs):
        task = self._scheduled_tasks.get(kwargs["task_id"])
        if self.roles and task is not None and kwargs.get("runnable"):
            kwargs["runnable"] = role_of(task) in self.roles
        super()._add_task(*args, **kwargs)


class RoleWorkerFactory(luigi.interface._WorkerSchedulerFactory):
    """Makes RoleWorkers that keep alive while the tasks they wait on run elsewhere."""

    def __init__(self, roles):
        self.roles = roles

    def create_worker(self, scheduler, worker_processes, assistant=False):
        return RoleWorker(
            scheduler=scheduler,
            worker_processes=worker_processes,
            assistant=assistant,
            roles=self.roles,
            keep_alive=True,
            wait_interval=0.5,
        )
