"""Connections to the catalog database: short-lived, closed, errors translated."""

import contextlib
import os

import psycopg2
import psycopg2.errors
import psycopg2.extras

from rf_pipelines.config import redact_url
from rf_pipelines.errors import ServiceUnavailable

CONNECT_TIMEOUT_S = 5


_kept = {}  # url -> connection, in a process that keeps its connections (keep_connections)
_keeping = []  # the pid of the process that asked to keep its connections


def keep_connections():
    """From now on this process keeps one connection per database between uses instead of
    opening one each time: for a pool's child working through many small files, where
    connecting costs more than the queries. Call it only in a process of its own (a forked
    child); a process forked from it again keeps nothing (a kept connection is never
    shared between processes)."""
    _keeping[:] = [os.getpid()]


def close_kept():
    """Closes the connections kept between uses."""
    while _kept:
        _kept.popitem()[1].close()


@contextlib.contextmanager
def connect(url):
    """Yields an open psycopg2 connection and always closes it (or, after
    ``keep_connections``, keeps it for the next use: rolled back to no transaction, and
    dropped after any error, so a broken connection is never used again).

    Raises:
        ServiceUnavailable: the server cannot be reached (transient: retry later).
    """
    keeping = _keeping == [os.getpid()]
    conn = _kept.pop(url, None) if keeping else None
    if conn is None or conn.closed:
        conn = _open(url)
    try:
        yield conn
    except BaseException:
        conn.close()
        raise
    if not keeping or conn.closed or conn.autocommit:
        conn.close()  # a session changed (autocommit) is not lent to the next caller
        return
    try:
        if conn.status != psycopg2.extensions.STATUS_READY:
            conn.rollback()
    except psycopg2.Error:
        conn.close()
        return
    _kept[url] = conn


def _open(url):
    try:
        conn = psycopg2.connect(url, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg2.OperationalError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ServiceUnavailable(f"database {redact_url(url)}: {reason}") from err
    psycopg2.extras.register_uuid(conn_or_curs=conn)
    return conn


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
