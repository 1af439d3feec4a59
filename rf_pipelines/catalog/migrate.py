"""Versioned, idempotent schema migrations from the numbered SQL files in migrations/."""

import importlib.resources
import re

from rf_pipelines.catalog import db
from rf_pipelines.errors import ConfigError

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Serialises concurrent `db migrate` runs (an arbitrary constant key).
_LOCK_KEY = 0x7266_7069


def available():
    """Returns [(version, name, sql)] of the packaged migrations, in order."""
    found = []
    for entry in importlib.resources.files("rf_pipelines.catalog").joinpath("migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found)


def migrate(url):
    """Applies the migrations the database lacks, each in the same transaction as its record.

    Args:
        url: database URL.

    Returns:
        list of (version, name) applied by this call; empty when the schema is current.
    """
    applied_now = []
    with db.transaction(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in cur.fetchall()}
        for version, name, sql in available():
            if version in done:
                continue
            cur.execute(sql)
            cur.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name)
            )
            applied_now.append((version, name))
    return applied_now


def current_version(url):
    """The highest applied migration, or 0 for an empty database."""
    with db.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not cur.fetchone()[0]:
            return 0
        cur.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
        return cur.fetchone()[0]


def require_current(url):
    """Fails with the fix when the database lacks migrations this release needs.

    Raises:
        ConfigError: the schema is behind.
    """
    have, need = current_version(url), available()[-1][0]
    if have < need:
        raise ConfigError(
            f"RF_DATABASE_URL: the catalog is at schema version {have}, this release needs "
            f"{need}; run `rf-pipelines db migrate`"
        )
