"""luigid as this package runs it: its configuration, its web app with the task logs, and a
call that forgets a backfill's finished tasks (``RfScheduler.forget_done``).

The tracking URL of every task run through luigid is ``{luigid}/logs/{day}/{task}.log``, so
the visualiser's "track progress" link opens the task's log. The route reads the log from
the scheduler's data root (``RF_DATA_ROOT``, local or ``s3://``), where workers publish it when
the task ends, as Airflow's web server shows its tasks' logs.
"""

import html
import logging
import sys
from concurrent.futures import ThreadPoolExecutor

import luigi.cmdline
import luigi.scheduler
import luigi.server
import tornado.ioloop
import tornado.web

from rf_pipelines import config, runs

logger = logging.getLogger(__name__)

# Finished tasks stay on the visualiser's pages for a day (luigid's default: 10 minutes),
# so the link a command prints still works when someone follows it the next morning.
REMOVE_DELAY_S = 86400
WORKER_DISCONNECT_DELAY_S = 15
_READERS = ThreadPoolExecutor(4, thread_name_prefix="task-logs")
LOG_ROUTE = runs.LOGS_PATH + r"/(\d{4}-\d{2}-\d{2})/([A-Za-z0-9_][A-Za-z0-9_.\-]{0,250}\.log)"


def luigid_config(state_path, history_url, stable_done_cooldown_secs=None):
    """The ``[scheduler]`` and ``[task_history]`` sections luigid runs with.

    Args:
        state_path: luigid's state file (kept across restarts).
        history_url: PostgreSQL URL of the task history, without a password.
        stable_done_cooldown_secs: luigid's wait before it schedules a finished task again;
            None keeps luigid's default (10 s).

    Raises:
        ConfigError: the history URL is malformed or carries a password (libpq's
            PGPASSWORD or ~/.pgpass provide it; it is never written to a file).
    """
    url = config.parse_database_url(history_url, "the task history URL")
    lines = [
        "[scheduler]",
        f"state_path = {state_path}",
        "record_task_history = true",
        f"remove_delay = {REMOVE_DELAY_S}",
        # A worker that stops pinging (it pings every second) for this long is dead: the
        # tasks it was running become FAILED when luigid prunes, which every run asks for as
        # it starts and while it waits for tasks another worker holds (runner.build), so a
        # run takes them over instead of being told for a minute (luigid's default) that
        # they are already running.
        f"worker_disconnect_delay = {WORKER_DISCONNECT_DELAY_S}",
    ]
    if stable_done_cooldown_secs is not None:
        lines.append(f"stable_done_cooldown_secs = {stable_done_cooldown_secs}")
    lines += ["[task_history]", f"db_connection = postgresql+psycopg2://{url.split('://', 1)[1]}"]
    return "\n".join(lines) + "\n"


def luigid_argv(address, port, background_folder=None):
    """The command that runs luigid with the log route (this module's ``main``)."""
    argv = [sys.executable, "-m", "rf_pipelines.scheduler", "--address", address]
    argv += ["--port", str(port)]
    if background_folder:
        folder = str(background_folder)
        argv += ["--background", "--pidfile", f"{folder}/pid", "--logdir", folder]
    return argv


class TaskLogHandler(tornado.web.RequestHandler):
    """``GET /logs/{day}/{task}.log``: the task's log from the data root, as plain text."""

    async def get(self, day, name):
        from rf_pipelines.targets import files

        url = files.join(config.settings().data_root, "logs", day, name)
        try:
            # In a thread: a slow store must not stall luigid's loop, which serves workers.
            body = await tornado.ioloop.IOLoop.current().run_in_executor(
                _READERS, files.read_bytes, url
            )
        except FileNotFoundError:
            self._page(
                404,
                f"No log at {url}. A task's log is published there when the task ends; "
                "a task still running, or one whose worker uses another data root, has none yet.",
            )
            return
        except Exception as err:  # noqa: BLE001 - any storage failure is shown, not raised
            logger.warning("cannot read %s: %s", url, err)
            self._page(503, f"Cannot read {url} now: {type(err).__name__}: {err}")
            return
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.write(body)

    def _page(self, status, message):
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(f"<!doctype html><title>task log</title><p>{html.escape(message)}</p>")


class RfScheduler(luigi.scheduler.Scheduler):
    """luigid's scheduler with one more call, ``forget_done``."""

    @luigi.scheduler.rpc_method()
    def forget_done(self, task_ids):
        """Drops those of ``task_ids`` that are DONE, at once instead of ``remove_delay``
        later: every task list luigid serves goes through all the tasks it holds (its
        prune), so a backfill's finished days would slow it down for a day. Returns how
        many it dropped."""
        # A DONE task that a task still to run depends on stays: luigid hands out a task
        # only when each of its dependencies is there and DONE (another run's, say).
        needed = {
            dep
            for task in self._state.get_active_tasks_by_status(
                luigi.scheduler.PENDING, luigi.scheduler.RUNNING
            )
            for dep in task.deps
        }
        done = [
            task_id
            for task_id in task_ids
            if task_id not in needed
            and getattr(self._state.get_task(task_id), "status", None) == luigi.scheduler.DONE
        ]
        self._state.inactivate_tasks(done)
        return len(done)


_luigi_app = luigi.server.app


def app(scheduler):
    """luigid's own tornado application with the ``/logs/`` route added."""
    application = _luigi_app(scheduler)
    application.add_handlers(r".*", [(LOG_ROUTE, TaskLogHandler)])
    return application


def main(argv=None):
    """luigid's command line (``--address``, ``--port``, ``--background``...), with the log
    route and ``forget_done``: luigi.server builds its app through ``luigi.server.app`` and
    its scheduler through ``luigi.server.Scheduler``, replaced here."""
    luigi.server.app = app
    luigi.server.Scheduler = RfScheduler
    luigi.cmdline.luigid(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
