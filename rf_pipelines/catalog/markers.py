"""Completion markers of database steps (the task_markers table)."""

from rf_pipelines.catalog.rows import jsonb, upsert


def exists(conn, marker_id):
    """True when the step with this marker id has committed."""
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM task_markers WHERE marker_id = %s", (marker_id,))
        return cur.fetchone() is not None


def existing(conn, marker_ids):
    """The subset of ``marker_ids`` that exist, in one query."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT marker_id FROM task_markers WHERE marker_id = ANY(%s)", (list(marker_ids),)
        )
        return {row[0] for row in cur.fetchall()}


def write(conn, marker_id, task_family, task_version, params):
    """Records a step as done; call inside the step's own transaction."""
    upsert(
        conn,
        "task_markers",
        {
            "marker_id": marker_id,
            "task_family": task_family,
            "task_version": task_version,
            "params": dict(params),
        },
        key=("marker_id",),
        touch_modified=False,
    )


def delete_matching(conn, params):
    """Deletes the markers whose parameters include ``params``; returns how many."""
    with conn.cursor() as cur:
        cur.execute("DELETE FROM task_markers WHERE params @> %s", (jsonb(dict(params)),))
        return cur.rowcount
