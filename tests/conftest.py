"""Fixtures that start the real services (PostgreSQL, S3 store, luigid, moto) and isolate tests.

The suite runs its own instance of the services, in its own home folder (under ``.rf-test``), on
free ports (``RF_PORT_BASE``), started at the beginning of the session and stopped at its end,
so a stack the user runs (the demo's, in ``.rf-local``) is neither restarted nor filled with
test tasks. Each session gets its own database and bucket; each test gets its own data root.
"""

import email
import email.policy
import os
import random
import shutil
import socket
import uuid
from pathlib import Path

import luigi
import psycopg2
import pytest
from aiosmtpd.controller import Controller

from rf_pipelines import clients, config, services
from rf_pipelines.catalog import migrate

REPO = Path(__file__).resolve().parents[1]
# Real files from other projects' test suites, with their provenance in tests/data/PROVENANCE.md.
TESTDATA = REPO / "tests" / "data"
# One home per test session: two sessions at once (or a session beside the demo) never share
# a service. A session's home stays until the next session, for its services' logs.
TEST_HOMES = REPO / ".rf-test"
HOME = TEST_HOMES / f"session-{os.getpid()}"


def _port_free(port):
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_base():
    """A base for ``RF_PORT_BASE`` whose ports (and SeaweedFS's gRPC ports) are all free."""
    span = len(config.DEFAULT_PORTS)
    for _ in range(500):
        # Below Linux's ephemeral range (32768-60999), gRPC ports (+10000) included, so an
        # outgoing connection cannot take a port between this check and the services' start.
        base = random.randrange(20000, 22700)
        # SeaweedFS also listens on each of its ports + 10000 (gRPC).
        ports = [base + n for n in range(span)] + [base + n + 10000 for n in range(2, span)]
        if all(_port_free(port) for port in ports):
            return base
    raise RuntimeError("no free block of ports on 127.0.0.1 for the test services")


def _isolated_environment():
    """The environment without the user's pointers at their own stack or data."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RF_", "AWS_ENDPOINT_URL", "LUIGI_CONFIG_PATH"))
    }


def _remove_finished_sessions():
    """Stops what sessions that are over left running (an interrupted one may leave its
    services) and removes their homes; never touches the user's stack."""
    for home in TEST_HOMES.glob("session-*"):
        pid = int(home.name.split("-", 1)[1])
        if pid != os.getpid() and not services.pid_alive(pid):
            services.stop(home)
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def isolated_environment():
    """Every test, with services or not, runs without the user's pointers at their own stack
    and data, with this session's home (command logs and run folders go there, never into
    the demo's .rf-local) and ports."""
    saved = dict(os.environ)
    isolated = _isolated_environment()
    os.environ.clear()
    os.environ.update(isolated)
    os.environ["RF_PORT_BASE"] = str(free_port_base())
    os.environ["LUIGI_CONFIG_PATH"] = str(REPO / "luigi.cfg")
    os.environ.update(services.local_env(HOME))
    _reset()
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def local_services(isolated_environment):
    """The suite's own services; the process environment points at them."""
    _remove_finished_sessions()
    try:
        services.start(HOME)
        yield services.local_env(HOME)
    finally:
        services.stop(HOME)


@pytest.fixture(scope="session")
def admin_url(local_services):
    return local_services["RF_DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"


def _admin(admin_url, statement):
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def create_database(admin_url, name, template=None):
    _admin(admin_url, f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url, name):
    _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def migrated_template(admin_url):
    """A migrated database that each test's database is copied from (fast, isolated)."""
    name = f"rf_template_{uuid.uuid4().hex[:10]}"
    migrate.migrate(create_database(admin_url, name))
    yield name
    drop_database(admin_url, name)


@pytest.fixture()
def database_url(admin_url, migrated_template):
    """A migrated database of this test's own, dropped afterwards."""
    name = f"rf_test_{uuid.uuid4().hex[:10]}"
    yield create_database(admin_url, name, template=migrated_template)
    drop_database(admin_url, name)


@pytest.fixture()
def empty_database(admin_url):
    """A fresh database without any migration applied."""
    name = f"rf_empty_{uuid.uuid4().hex[:10]}"
    yield create_database(admin_url, name)
    drop_database(admin_url, name)


@pytest.fixture(scope="session")
def s3_bucket(local_services):
    """A bucket of this session's own on the local object store, deleted at the end (the
    store keeps a set of volumes per bucket, so tests share one and use prefixes)."""
    name = f"rf-test-{uuid.uuid4().hex[:10]}"
    s3 = clients.aws_client("s3", local_services["AWS_ENDPOINT_URL_S3"])
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", ())]
        if keys:
            s3.delete_objects(Bucket=name, Delete={"Objects": keys})
    s3.delete_bucket(Bucket=name)


@pytest.fixture(params=["local", "s3"])
def data_root(request, tmp_path, s3_bucket, database_url, monkeypatch):
    """A fresh data root on each backend, configured through RF_DATA_ROOT."""
    if request.param == "local":
        root = str(tmp_path / "data")
    else:
        root = f"s3://{s3_bucket}/{request.node.name.replace('[', '-').rstrip(']')}"
    monkeypatch.setenv("RF_DATA_ROOT", root)
    monkeypatch.setenv("RF_DATABASE_URL", database_url)
    _reset()
    yield root
    _reset()


@pytest.fixture()
def settings_env(monkeypatch):
    """Reloads settings after the test changed the environment, and again afterwards."""
    _reset()
    yield monkeypatch
    _reset()


def _reset():
    config.settings.cache_clear()
    clients.reset()


@pytest.fixture(autouse=True)
def _fresh_settings():
    """Every test reads settings from the environment as it is when the test starts."""
    _reset()
    yield


@pytest.fixture()
def luigi_config():
    """Sets luigi config values for one test, and restores them."""
    cfg = luigi.configuration.get_config()
    changed = []

    def set_value(section, key, value):
        if not cfg.has_section(section):
            cfg.add_section(section)
        changed.append((section, key, cfg.get(section, key, None)))
        cfg.set(section, key, value)

    yield set_value
    for section, key, old in reversed(changed):
        if old is None:
            cfg.remove_option(section, key)
        else:
            cfg.set(section, key, old)


class _Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(f"Subject: {message['Subject']}\n{message.get_content()}")
        return "250 OK"


@pytest.fixture()
def smtp(luigi_config):
    """A real SMTP server (aiosmtpd) on 127.0.0.1, configured as the notification channel."""
    inbox = _Inbox()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    luigi_config("RfNotify", "channels", "smtp")
    luigi_config("RfNotify", "email_to", "oncall@example.org")
    luigi_config("RfNotify", "smtp_host", "127.0.0.1")
    luigi_config("RfNotify", "smtp_port", str(controller.port))
    yield inbox
    controller.stop()


@pytest.fixture()
def s2_bucket(s3_bucket, database_url, tmp_path, monkeypatch):
    """A mirror of the test's own under the session bucket; the data root is a local folder."""
    monkeypatch.setenv("RF_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("RF_DATABASE_URL", database_url)
    root = f"s3://{s3_bucket}/s2-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("RF_SENTINEL2_ROOT", root)
    config.settings.cache_clear()
    return root
