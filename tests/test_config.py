"""Settings: precedence, validation and the one-line messages for bad values."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from rf_pipelines import config
from rf_pipelines.cli import cli
from rf_pipelines.errors import ConfigError


def test_defaults_are_a_local_folder_and_the_local_postgres(settings_env, tmp_path):
    for name in (
        "RF_DATA_ROOT",
        "RF_DATABASE_URL",
        "AWS_ENDPOINT_URL_S3",
        "RF_S3_ENDPOINT_URL",
        "RF_PORT_BASE",
        "RF_PG_PORT",
    ):
        settings_env.delenv(name, raising=False)
    settings_env.setenv("RF_HOME", str(tmp_path))
    settings = config.load_settings()
    assert settings.data_root == str(tmp_path / "data")
    assert settings.database_url == "postgresql://postgres@127.0.0.1:54329/rf_pipelines"
    assert settings.sqlalchemy_url.startswith("postgresql+psycopg2://")
    assert settings.s3_endpoint_url is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s3://my-bucket/some/prefix/", "s3://my-bucket/some/prefix"),
        ("s3://my-bucket", "s3://my-bucket"),
        ("file:///srv/rf", "/srv/rf"),
    ],
)
def test_data_root_forms(settings_env, value, expected):
    settings_env.setenv("RF_DATA_ROOT", value)
    assert config.load_settings().data_root == expected


def test_relative_data_root_becomes_absolute(settings_env):
    settings_env.setenv("RF_DATA_ROOT", "out/data")
    assert config.load_settings().data_root == str(Path("out/data").absolute())


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RF_DATA_ROOT", "gs://bucket/x", "RF_DATA_ROOT: unknown URL scheme 'gs'"),
        ("RF_DATA_ROOT", "s3://Bad_Bucket/x", "RF_DATA_ROOT: 'Bad_Bucket'"),
        ("RF_DATABASE_URL", "mysql://db/x", "RF_DATABASE_URL: 'mysql://db/x' is not a PostgreSQL"),
        ("AWS_ENDPOINT_URL_S3", "localhost:9000", "AWS_ENDPOINT_URL_S3: 'localhost:9000'"),
        ("RF_UPLOAD_PROCESSES", "0", "RF_UPLOAD_PROCESSES: '0' is not a positive integer"),
        ("RF_UPLOAD_PROCESSES", "two", "RF_UPLOAD_PROCESSES: 'two' is not a positive integer"),
        ("RF_SCRATCH_DIR", "s3://bucket/tmp", "RF_SCRATCH_DIR: 's3://bucket/tmp' must be a local"),
        ("RF_SCRATCH_DIR", "/etc/hostname", "RF_SCRATCH_DIR: '/etc/hostname' is not a folder"),
    ],
)
def test_bad_value_names_the_setting(settings_env, name, value, message):
    settings_env.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        config.load_settings()
    assert str(err.value).startswith(message)


def test_scratch_and_processes_default_to_the_temporary_folder_and_the_cores(settings_env):
    import tempfile

    settings_env.delenv("RF_SCRATCH_DIR", raising=False)
    settings_env.delenv("RF_UPLOAD_PROCESSES", raising=False)
    settings = config.load_settings()
    assert settings.scratch_dir == tempfile.gettempdir()
    assert settings.upload_processes == config.usable_cores()
    settings_env.setenv("RF_SCRATCH_DIR", "scratch")
    settings_env.setenv("RF_UPLOAD_PROCESSES", "3")
    settings = config.load_settings()
    assert settings.scratch_dir == str(Path("scratch").absolute())
    assert settings.upload_processes == 3


def test_usable_cores_follow_a_containers_cpu_quota(tmp_path):
    import os

    cores = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("max 100000\n")
    assert config.usable_cores(str(quota)) == cores
    quota.write_text("50000 100000\n")  # half a core: one process
    assert config.usable_cores(str(quota)) == 1
    quota.write_text(f"{cores * 400000} 100000\n")  # more than the machine has
    assert config.usable_cores(str(quota)) == cores
    assert config.usable_cores(str(tmp_path / "none")) == cores


def test_password_in_luigi_cfg_is_refused():
    with pytest.raises(ConfigError, match="holds a password; remove it and set PGPASSWORD"):
        config.parse_database_url("postgresql://rf:hunter2@db/rf", "[RfConfig] database_url")


def test_password_never_appears_in_messages():
    assert config.redact_url("postgresql://rf:hunter2@db/rf") == "postgresql://rf:***@db/rf"


def test_cli_reports_bad_value_in_one_line(settings_env):
    settings_env.setenv("RF_DATA_ROOT", "ftp://host/data")
    result = CliRunner().invoke(cli, ["services", "env"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == [
        "Error: RF_DATA_ROOT: unknown URL scheme 'ftp' in 'ftp://host/data'; "
        "use a local folder, file:///folder or s3://bucket/prefix"
    ]


def test_unreachable_database_fails_at_start_with_the_fix(settings_env):
    settings_env.setenv("RF_DATABASE_URL", "postgresql://postgres@127.0.0.1:9/rf")
    result = CliRunner().invoke(cli, ["db", "migrate"])
    assert result.exit_code == 75
    (line,) = result.output.strip().splitlines()
    assert line.startswith(
        "Error: RF_DATABASE_URL: cannot reach postgresql://postgres@127.0.0.1:9/rf"
    )
    assert "rf-pipelines services start" in line


def test_ports_default_move_together_with_a_base_or_one_by_one(settings_env):
    for name in ("RF_PORT_BASE", *config.PORT_ENV.values(), "RF_SCHEDULER_URL", "RF_DATABASE_URL"):
        settings_env.delenv(name, raising=False)
    assert config.local_ports() == config.DEFAULT_PORTS
    settings_env.setenv("RF_PORT_BASE", "30000")
    ports = config.local_ports()
    assert [ports[n] for n in ("luigid", "postgres", "s3", "moto")] == [30000, 30001, 30002, 30003]
    assert sorted(ports.values()) == list(range(30000, 30010))
    assert [ports[n] for n in ("spark", "spark_ui", "spark_worker_ui")] == [30007, 30008, 30009]
    assert config.scheduler_url() == "http://127.0.0.1:30000"
    assert config.local_database_url() == "postgresql://postgres@127.0.0.1:30001/rf_pipelines"
    settings_env.setenv("RF_PG_PORT", "6543")
    assert config.local_ports()["postgres"] == 6543
    assert config.load_settings().database_url.endswith(":6543/rf_pipelines")
    settings_env.setenv("RF_SCHEDULER_URL", "http://luigid.internal:8082/")
    assert config.scheduler_url() == "http://luigid.internal:8082"


@pytest.mark.parametrize(
    ("name", "value"),
    [("RF_PORT_BASE", "60000"), ("RF_S3_PORT", "80"), ("RF_LUIGID_PORT", "eighty")],
)
def test_a_bad_port_fails_with_one_line_naming_it(settings_env, name, value):
    settings_env.setenv(name, value)
    result = CliRunner().invoke(cli, ["services", "env"])
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {name}: {value!r} is not a usable port")


def test_the_backfill_bound_defaults_to_2000_and_is_read_from_either_place(
    settings_env, luigi_config
):
    settings_env.delenv("RF_BACKFILL_TASKS", raising=False)
    assert config.load_settings().backfill_tasks == 2000
    luigi_config("RfConfig", "backfill_tasks", "500")
    assert config.load_settings().backfill_tasks == 500
    settings_env.setenv("RF_BACKFILL_TASKS", "1_000")  # the environment wins
    assert config.load_settings().backfill_tasks == 1000
