"""Generic parameterised upsert and fetch, so that table modules state only their columns."""

import json
import math

import numpy as np
import orjson
from psycopg2 import sql
from psycopg2.extras import Json

from rf_pipelines.catalog.db import dict_cursor

# orjson is about 8x faster than json here; non-string keys become strings and datetimes
# are written with str(), as json.dumps(default=str) does; numpy numbers are numbers, and
# NaN is null (PostgreSQL refuses NaN in jsonb).
_JSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_SERIALIZE_NUMPY
)


def _dumps(value):
    try:
        return orjson.dumps(value, default=str, option=_JSON_OPTIONS).decode()
    except TypeError:  # what orjson refuses (an integer beyond 64 bits): json writes it
        return json.dumps(_plain(value), default=str, allow_nan=False)


def _plain(value):
    """``value`` as json.dumps can write it the way orjson would: NaN and infinities as
    null, numpy numbers as numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def jsonb(value):
    """Marks a value (a list, say) for a jsonb column; dicts are marked automatically."""
    return Json(value, dumps=_dumps)


def adapt(value):
    """Wraps dicts as jsonb; lists stay SQL arrays unless wrapped with ``jsonb``."""
    return jsonb(value) if isinstance(value, dict) else value


def upsert(conn, table, row, key=("id",), touch_modified=True):
    """Inserts ``row`` or updates the row with the same key; never duplicates.

    Args:
        conn: open connection (the caller owns the transaction).
        table: table name.
        row: column -> value; dicts become jsonb.
        key: the conflict columns.
        touch_modified: set ``modified_at = now()`` on update.

    Returns:
        dict of the stored row.
    """
    cols = list(row)
    updates = [
        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in cols if c not in key
    ]
    if touch_modified:
        updates.append(sql.SQL("modified_at = now()"))
    action = (
        sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(updates))
        if updates
        else sql.SQL("DO NOTHING")
    )
    query = sql.SQL(
        "INSERT INTO {t} ({cols}) VALUES ({vals}) ON CONFLICT ({key}) {action} RETURNING *"
    ).format(
        t=sql.Identifier(table),
        cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
        vals=sql.SQL(", ").join(sql.Placeholder() * len(cols)),
        key=sql.SQL(", ").join(map(sql.Identifier, key)),
        action=action,
    )
    with dict_cursor(conn) as cur:
        cur.execute(query, [adapt(row[c]) for c in cols])
        return cur.fetchone()


def fetch_one(conn, table, row_id, lock=False):
    """The row with this id as a dict, or None; ``lock`` takes a row lock (FOR UPDATE)."""
    query = sql.SQL("SELECT * FROM {t} WHERE id = %s" + (" FOR UPDATE" if lock else "")).format(
        t=sql.Identifier(table)
    )
    with dict_cursor(conn) as cur:
        cur.execute(query, (str(row_id),))
        return cur.fetchone()


def count(conn, table, **where):
    """Number of rows matching column = value conditions."""
    conditions = [sql.SQL("{} = %s").format(sql.Identifier(c)) for c in where]
    query = sql.SQL("SELECT count(*) FROM {t} WHERE {cond}").format(
        t=sql.Identifier(table),
        cond=sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true"),
    )
    with conn.cursor() as cur:
        cur.execute(query, [str(v) for v in where.values()])
        return cur.fetchone()[0]
