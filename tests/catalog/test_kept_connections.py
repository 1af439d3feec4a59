"""A pool's child keeps one database connection between uses (connecting costs more than a
small file's queries); it never lends one that failed, changed its session or sits in a
transaction, and no other process keeps any."""

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from rf_pipelines.catalog import db


def _backend(url):
    with db.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]


def _in_a_child_that_keeps(url):
    db.keep_connections()
    seen = {"first": _backend(url), "again": _backend(url)}
    try:
        with db.transaction(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            raise ValueError("the caller failed")
    except ValueError:
        pass
    seen["after an error"] = _backend(url)
    with db.connect(url) as conn, conn.cursor() as cur:
        conn.autocommit = True
        cur.execute("SELECT pg_backend_pid()")
        seen["autocommit"] = cur.fetchone()[0]
    seen["after autocommit"] = _backend(url)
    with db.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")  # a transaction left open by the caller
    with db.connect(url) as conn:
        seen["status after an open transaction"] = conn.status
    return seen


def test_a_child_keeps_its_connection_and_drops_a_spoilt_one(database_url):
    with ProcessPoolExecutor(1, mp_context=get_context("fork")) as pool:
        seen = pool.submit(_in_a_child_that_keeps, database_url).result()
    assert seen["first"] == seen["again"]
    assert seen["after an error"] != seen["first"]
    assert seen["autocommit"] == seen["after an error"]  # the kept one, spoilt by its caller
    assert seen["after autocommit"] != seen["autocommit"]
    assert seen["status after an open transaction"] == 1  # STATUS_READY: rolled back


def test_other_processes_open_a_connection_each_time(database_url):
    assert _backend(database_url) != _backend(database_url)
    with ProcessPoolExecutor(1, mp_context=get_context("fork")) as pool:
        # A process forked from one that keeps its connections keeps none of them.
        assert pool.submit(_forked_from_a_keeper, database_url).result()


def _forked_from_a_keeper(url):
    db.keep_connections()
    _backend(url)
    with ProcessPoolExecutor(1, mp_context=get_context("fork")) as pool:
        return pool.submit(_differs, url).result()


def _differs(url):
    return _backend(url) != _backend(url)
