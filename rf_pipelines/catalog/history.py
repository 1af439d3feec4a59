"""luigid's task history (its own tables, in its own database): recent task runs."""

from rf_pipelines.catalog import db

_RECENT = """
    SELECT t.id, t.task_id, t.name, t.host,
           min(e.ts) FILTER (WHERE e.event_name = 'RUNNING') AS started,
           max(e.ts) AS last_ts,
           (array_agg(e.event_name ORDER BY e.ts DESC, e.id DESC))[1] AS state
    FROM tasks t JOIN task_events e ON e.task_id = t.id
    GROUP BY t.id ORDER BY max(e.ts) DESC LIMIT %s
"""
_FINISHED = ("DONE", "FAILED", "DISABLED")


def recent_runs(history_url, limit=20):
    """The latest task runs recorded by luigid: task, state, start, duration, parameters.

    Returns:
        list of dict, newest first; empty when luigid has recorded nothing yet.
    """
    with db.connect(history_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('task_events') IS NOT NULL")
        if not cur.fetchone()[0]:
            return []
        cur.execute(_RECENT, (limit,))
        rows = cur.fetchall()
        cur.execute(
            "SELECT task_id, name, value FROM task_parameters WHERE task_id = ANY(%s)",
            ([r[0] for r in rows],),
        )
        params = {}
        for task, name, value in cur.fetchall():
            params.setdefault(task, {})[name] = value
    return [
        {
            "task": name,
            "task_id": task_id,
            "state": state,
            "started": started,
            "seconds": round((last_ts - started).total_seconds(), 1)
            if started and state in _FINISHED
            else None,
            "host": host,
            "params": params.get(pk, {}),
        }
        for pk, task_id, name, host, started, last_ts, state in rows
    ]
