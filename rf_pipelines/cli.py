"""The rf-pipelines command: thin; translates errors to one-line messages and exit codes."""

import json
import sys

import click

from rf_pipelines import config, services
from rf_pipelines.errors import BuildFailed, PermanentError, RfError, TransientError

# Exit codes: 2 bad input or configuration, 3-6 build outcomes (see tasks.runner), 75 retry later.
EXIT_PERMANENT = 2
EXIT_TRANSIENT = 75


class RfCommandError(click.ClickException):
    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


class _Group(click.Group):
    """Turns the package's errors into one line on stderr and a distinct exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BuildFailed as err:
            raise RfCommandError(str(err), err.exit_code) from err
        except PermanentError as err:
            raise RfCommandError(str(err), EXIT_PERMANENT) from err
        except TransientError as err:
            raise RfCommandError(str(err), EXIT_TRANSIENT) from err
        except RfError as err:
            raise RfCommandError(str(err), 1) from err


@click.group(cls=_Group)
@click.version_option(package_name="rf_pipelines")
def cli():
    """Raster Foundry's imagery workflows on Luigi."""


@cli.group(cls=_Group)
def db():
    """The catalog database."""


@db.command("migrate")
def db_migrate():
    """Apply the schema migrations the database lacks (safe to run again)."""
    from rf_pipelines.catalog import db as catalog_db
    from rf_pipelines.catalog import migrate

    url = config.settings().database_url
    catalog_db.check(url)
    applied = migrate.migrate(url)
    for version, name in applied:
        click.echo(f"applied {version:04d}_{name}")
    click.echo(f"schema at version {migrate.current_version(url)}")


@cli.group(cls=_Group)
def services_group():
    """Local PostgreSQL, S3 store, luigid and moto on 127.0.0.1, for the demo and tests."""


cli.add_command(services_group, name="services")


@services_group.command("start")
def services_start():
    """Start every local service (idempotent) and wait until each answers."""
    home = config.settings().home
    services.start(home)
    _print_status(home)


@services_group.command("stop")
def services_stop():
    """Stop every local service; nothing is left running."""
    home = config.settings().home
    services.stop(home)
    _print_status(home)


@services_group.command("status")
def services_status():
    """Show which local services run; exit 1 if any does not."""
    states = _print_status(config.settings().home)
    if not all(s.running for s in states):
        sys.exit(1)


@services_group.command("env")
def services_env():
    """Print the export lines that point the package, boto3 and luigi at the local services."""
    for key, value in services.local_env(config.settings().home).items():
        click.echo(f"export {key}={value}")


def _print_status(home):
    states = services.status(home)
    for s in states:
        state = f"running (pid {s.pid})" if s.running else "stopped"
        click.echo(f"{s.name:9} {state:22} {s.url}")
    return states


@cli.command()
@click.argument("path")
@click.option("--local-scheduler", is_flag=True, help="Use the in-process scheduler, not luigid.")
def demo(path, local_scheduler):
    """Describe the GeoTIFF at PATH and register it as a scene; print what was produced."""
    from rf_pipelines.catalog import db as catalog_db
    from rf_pipelines.catalog import migrate, scenes
    from rf_pipelines.tasks import DescribeRaster, RegisterRaster
    from rf_pipelines.tasks.runner import build, scheduler_running, scheduler_url

    settings = config.settings()
    catalog_db.check(settings.database_url)
    migrate.migrate(settings.database_url)
    task = RegisterRaster(path=path)
    local_scheduler = local_scheduler or not scheduler_running()
    result = build([task], local_scheduler=local_scheduler)
    click.echo(result.summary_text)
    with catalog_db.connect(settings.database_url) as conn:
        scene = scenes.get_scene(conn, task.scene_id())
    click.echo(f"description: {DescribeRaster(path=path).output_url('description.json')}")
    click.echo("scene: " + json.dumps(_scene_summary(scene), indent=2, default=str))
    if not local_scheduler:
        click.echo(
            f"visualiser: {scheduler_url()}/static/visualiser/index.html"
            f"#tab=graph&taskId={task.task_id}"
        )


def _scene_summary(scene):
    keys = ("id", "name", "datasource_id", "written_by", "modified_at")
    summary = {key: scene[key] for key in keys}
    ring = scene["tile_footprint_4326"]["coordinates"][0]
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    summary["footprint_bbox_4326"] = [min(lons), min(lats), max(lons), max(lats)]
    return summary


def main():
    cli(prog_name="rf-pipelines")
