"""Fixtures that start the real services (PostgreSQL, S3 store, luigid, moto) and isolate tests.

Services are started once per session with ``rf_pipelines.services`` (idempotent: ones already
running are reused) and the ones this session started are stopped at its end. Each session gets
its own database and bucket; each test gets its own data root.
"""

import email
import email.policy
import os
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
TESTDATA = REPO.parent / "shared" / "testdata"
HOME = REPO / ".rf-local"


@pytest.fixture(scope="session")
def local_services():
    """The local services, started if needed; the process environment points at them."""
    before = {s.name for s in services.status(HOME) if s.running}
    services.start(HOME)
    saved = dict(os.environ)
    os.environ.update(services.local_env(HOME))
    os.environ["LUIGI_CONFIG_PATH"] = str(REPO / "luigi.cfg")
    _reset()
    yield services.local_env(HOME)
    os.environ.clear()
    os.environ.update(saved)
    started = [name for name in services.NAMES if name not in before]
    services.stop(HOME, started)


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
