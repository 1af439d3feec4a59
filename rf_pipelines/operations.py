"""Operating the pipelines: luigid for production, recent runs from its task history, and
reaping rows left in PROCESSING or INGESTING by workers that died."""

import json
import re
import urllib.parse
import urllib.request
from datetime import timedelta

import psycopg2

from rf_pipelines import config
from rf_pipelines.catalog import db, uploads
from rf_pipelines.catalog.statuses import IngestStatus, JobStatus, UploadStatus
from rf_pipelines.errors import InvalidInput, ServiceUnavailable

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(value, option="--older-than"):
    """``90s``, ``30m``, ``2h``, ``7d`` -> timedelta.

    Raises:
        InvalidInput: another form, or zero.
    """
    match = _DURATION.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise InvalidInput(f"{option} {value!r}: write a positive duration such as 30m, 2h or 1d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def scheduler_config(state_path, history_url):
    """The ``[scheduler]`` and ``[task_history]`` sections luigid runs with in production.

    Raises:
        ConfigError: the history URL is malformed or carries a password (libpq's
            PGPASSWORD or ~/.pgpass provide it; it is never written to a file).
    """
    url = config.parse_database_url(history_url, "the task history URL")
    return (
        "[scheduler]\n"
        f"state_path = {state_path}\n"
        "record_task_history = true\n"
        "[task_history]\n"
        f"db_connection = postgresql+psycopg2://{url.split('://', 1)[1]}\n"
    )


def ensure_database(url):
    """Creates the database of ``url`` on its server when it does not exist."""
    server, name = url.rsplit("/", 1)
    name = name.split("?", 1)[0]
    try:
        conn = psycopg2.connect(f"{server}/postgres")
    except psycopg2.OperationalError as err:
        raise ServiceUnavailable(f"PostgreSQL at {server} is unreachable: {err}") from err
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if not cur.fetchone():
                cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def recent_runs(history_url, limit=20):
    """The latest task runs recorded by luigid: task, state, start, duration, parameters.

    Returns:
        list of dict, newest first.
    """
    query = """
        SELECT t.id, t.task_id, t.name, t.host,
               min(e.ts) FILTER (WHERE e.event_name = 'RUNNING') AS started,
               max(e.ts) AS last_ts,
               (array_agg(e.event_name ORDER BY e.ts DESC, e.id DESC))[1] AS state
        FROM tasks t JOIN task_events e ON e.task_id = t.id
        GROUP BY t.id ORDER BY max(e.ts) DESC LIMIT %s
    """
    try:
        conn = psycopg2.connect(history_url)
    except psycopg2.OperationalError as err:
        raise ServiceUnavailable(f"the task history database is unreachable: {err}") from err
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('task_events') IS NOT NULL")
            if not cur.fetchone()[0]:
                return []
            cur.execute(query, (limit,))
            rows = cur.fetchall()
            ids = [r[0] for r in rows]
            cur.execute(
                "SELECT task_id, name, value FROM task_parameters WHERE task_id = ANY(%s)", (ids,)
            )
            params = {}
            for task, name, value in cur.fetchall():
                params.setdefault(task, {})[name] = value
    finally:
        conn.close()
    runs = []
    for pk, task_id, name, host, started, last_ts, state in rows:
        finished = state in ("DONE", "FAILED", "DISABLED")
        runs.append(
            {
                "task": name,
                "task_id": task_id,
                "state": state,
                "started": started,
                "seconds": round((last_ts - started).total_seconds(), 1)
                if started and finished
                else None,
                "host": host,
                "params": params.get(pk, {}),
            }
        )
    return runs


def running_tasks(scheduler_url):
    """The parameters of every task luigid reports RUNNING.

    Raises:
        ServiceUnavailable: luigid does not answer (then nothing can be reaped safely).
    """
    query = urllib.parse.quote(json.dumps({"status": "RUNNING"}))
    try:
        with urllib.request.urlopen(f"{scheduler_url}/api/task_list?data={query}", timeout=10) as r:
            body = json.loads(r.read())
    except OSError as err:
        raise ServiceUnavailable(
            f"luigid at {scheduler_url} does not answer, so what it runs is unknown: {err}"
        ) from err
    return [task.get("params", {}) for task in body.get("response", {}).values()]


def reap(database_url, scheduler_url, older_than):
    """Resets uploads stuck in PROCESSING and scenes stuck in INGESTING for longer than
    ``older_than`` whose task luigid no longer runs: the upload back to UPLOADED (its
    unfinished files back to QUEUED), the scene back to TOBEINGESTED, with the reason.

    Returns:
        dict: "uploads" and "scenes", the ids reset.
    """
    running = running_tasks(scheduler_url)
    busy_uploads = {p.get("upload_id") for p in running if p.get("upload_id")}
    busy_scenes = {p.get("scene_id") for p in running if p.get("scene_id")}
    reason = f"reaped: stuck for more than {older_than} with no task running in luigid"
    reset = {"uploads": [], "scenes": []}
    with db.transaction(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id FROM uploads WHERE upload_status = 'PROCESSING' "
            "AND modified_at < now() - %s FOR UPDATE SKIP LOCKED",
            (older_than,),
        )
        for (upload_id,) in cur.fetchall():
            if str(upload_id) in busy_uploads:
                continue
            cur.execute(
                "UPDATE upload_files SET status = %s, modified_at = now() "
                "WHERE upload_id = %s AND status = %s",
                (str(JobStatus.QUEUED), upload_id, str(JobStatus.PROCESSING)),
            )
            uploads.set_upload_status(conn, upload_id, UploadStatus.UPLOADED, reason=reason)
            reset["uploads"].append(str(upload_id))
        cur.execute(
            "SELECT id FROM scenes WHERE ingest_status = 'INGESTING' "
            "AND modified_at < now() - %s FOR UPDATE SKIP LOCKED",
            (older_than,),
        )
        for (scene_id,) in cur.fetchall():
            if str(scene_id) in busy_scenes:
                continue
            cur.execute(
                "UPDATE scenes SET ingest_status = %s, status_reason = %s, modified_at = now() "
                "WHERE id = %s",
                (str(IngestStatus.TOBEINGESTED), reason, scene_id),
            )
            reset["scenes"].append(str(scene_id))
    return reset
