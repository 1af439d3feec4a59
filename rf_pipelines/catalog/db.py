"""Connections to the catalog database: short-lived, closed, errors translated."""

import contextlib

import psycopg2
import psycopg2.errors
import psycopg2.extras

from rf_pipelines.config import redact_url
from rf_pipelines.errors import ServiceUnavailable

CONNECT_TIMEOUT_S = 5


@contextlib.contextmanager
def connect(url):
    """Yields an open psycopg2 connection and always closes it.

    Raises:
        ServiceUnavailable: the server cannot be reached (transient: retry later).
    """
    try:
        conn = psycopg2.connect(url, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg2.OperationalError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ServiceUnavailable(f"database {redact_url(url)}: {reason}") from err
    try:
        psycopg2.extras.register_uuid(conn_or_curs=conn)
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def transaction(url):
    """Yields a connection inside one transaction: committed on success, rolled back on error.

    Raises:
        ServiceUnavailable: the server cannot be reached or dropped the connection.
    """
    with connect(url) as conn:
        try:
            with conn:
                yield conn
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as err:
            raise ServiceUnavailable(f"database {redact_url(url)}: {err}".strip()) from err


def check(url, setting="RF_DATABASE_URL"):
    """Fails fast with one line naming the setting and the fix when the database is unreachable.

    Raises:
        ServiceUnavailable: cannot connect.
    """
    try:
        with connect(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    except ServiceUnavailable as err:
        raise ServiceUnavailable(
            f"{setting}: cannot reach {redact_url(url)} ({str(err).split(': ', 1)[-1]}); "
            "start the local services with `rf-pipelines services start` or point "
            f"{setting} at a running PostgreSQL"
        ) from err


def dict_cursor(conn):
    """A cursor returning rows as dicts."""
    return conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)


def ensure_database(url):
    """Creates the database that ``url`` names, on its server, when it does not exist.

    Raises:
        ServiceUnavailable: the server's ``postgres`` database cannot be reached.
    """
    server, name = url.rsplit("/", 1)
    name = name.split("?", 1)[0]
    with connect(f"{server}/postgres") as conn:
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if not cur.fetchone():
                cur.execute(f'CREATE DATABASE "{name}"')
