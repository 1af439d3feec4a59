"""Settings: precedence, validation and the one-line messages for bad values."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from rf_pipelines import config
from rf_pipelines.cli import cli
from rf_pipelines.errors import ConfigError


def test_defaults_are_a_local_folder_and_the_local_postgres(settings_env, tmp_path):
    for name in ("RF_DATA_ROOT", "RF_DATABASE_URL", "AWS_ENDPOINT_URL_S3", "RF_S3_ENDPOINT_URL"):
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
    ],
)
def test_bad_value_names_the_setting(settings_env, name, value, message):
    settings_env.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        config.load_settings()
    assert str(err.value).startswith(message)


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
