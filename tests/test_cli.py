"""The command line: every command and group answers --help."""

import click
import pytest
from click.testing import CliRunner

from rf_pipelines.cli import cli


def _commands(group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


def test_top_level_help_lists_the_commands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("db", "services", "demo"):
        assert f"  {name} " in result.output


@pytest.mark.parametrize("path", list(_commands(cli)), ids=" ".join)
def test_every_command_has_help(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: cli {' '.join(path)}")


def test_import_help_names_the_sources_and_gives_an_example():
    result = CliRunner().invoke(cli, ["import", "--help"])
    for source in ("sentinel2 ", "landsat ", "sentinel2-stac ", "stac:COLLECTION@URL"):
        assert source in result.output
    assert "rf-pipelines import landsat --date 2024-05-01 --lookback 3" in result.output


def test_every_command_takes_verbose_and_the_help_lists_the_exit_codes():
    for path in _commands(cli):
        command = cli
        for name in path:
            command = command.commands[name]
        if not isinstance(command, click.Group):
            assert "--verbose" in [opt for p in command.params for opt in p.opts], path
    assert "75 a service or API" in CliRunner().invoke(cli, ["--help"]).output


def test_services_status_exits_1_when_a_service_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv("RF_HOME", str(tmp_path))  # a home where no service was started
    result = CliRunner().invoke(cli, ["services", "status"])
    assert result.exit_code == 1
    assert result.output.count("stopped") == 4


def test_the_demo_summary_bounds_every_part_of_a_cut_footprint():
    from rf_pipelines.cli import _scene_summary

    scene = {
        "id": "s",
        "name": "n",
        "datasource_id": "d",
        "written_by": "w",
        "modified_at": "m",
        "ingest_location": None,
        "scene_metadata": {},
        "thumbnails": [],
        "tile_footprint_4326": {
            "type": "MultiPolygon",
            "coordinates": [
                [[[170, -10], [180, -10], [180, 10], [170, 10], [170, -10]]],
                [[[-180, -10], [-170, -10], [-170, 12], [-180, 12], [-180, -10]]],
            ],
        },
    }
    assert _scene_summary(scene)["footprint_bbox_4326"] == [-180, -10, 180, 12]
