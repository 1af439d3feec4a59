"""The rf-pipelines command: thin; translates errors to one-line messages and exit codes."""

import json
import os
import sys

import click

from rf_pipelines import config, services
from rf_pipelines.errors import BuildFailed, InvalidInput, PermanentError, RfError, TransientError

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
@click.argument("paths", nargs=-1, required=True)
@click.option("--local-scheduler", is_flag=True, help="Use the in-process scheduler, not luigid.")
@click.option(
    "--ingest/--no-ingest",
    default=True,
    show_default=True,
    help="Ingest the scenes into tiles (Spark).",
)
def demo(paths, local_scheduler, ingest):
    """Upload the GeoTIFFs at PATHS (once), process the upload, print its scenes.

    The upload's id derives from the paths, so a second run finds it COMPLETE and does nothing.
    """
    from rf_pipelines import ids, uploading
    from rf_pipelines.catalog import db as catalog_db
    from rf_pipelines.catalog import migrate, scenes, uploads
    from rf_pipelines.errors import NotFound
    from rf_pipelines.tasks import ProcessUpload
    from rf_pipelines.tasks.runner import build, scheduler_running, scheduler_url

    url = config.settings().database_url
    catalog_db.check(url)
    migrate.migrate(url)
    upload_id = ids.stable_id("demo-upload", *sorted(os.path.abspath(p) for p in paths))
    with catalog_db.connect(url) as conn:
        try:
            uploads.get_upload(conn, upload_id)
            exists = True
        except NotFound:
            exists = False
    if not exists:
        uploading.create_upload(paths, "demo", project="Demo", upload_id=upload_id)
    task = ProcessUpload(upload_id=str(upload_id))
    local_scheduler = local_scheduler or not scheduler_running()
    result = build([task], local_scheduler=local_scheduler)
    click.echo(result.summary_text)
    with catalog_db.connect(url) as conn:
        summary = uploads.upload_summary(conn, upload_id)
        found = [scenes.scene_details(conn, f["scene_id"]) for f in summary["files"]]
    click.echo(f"upload {upload_id}: {summary['status']}")
    for scene in found:
        click.echo("scene: " + json.dumps(_scene_summary(scene), indent=2, default=str))
    if ingest and summary["status"] == "COMPLETE":
        from rf_pipelines.tasks import IngestScene

        for scene in found:
            with catalog_db.transaction(url) as conn:
                scenes.queue_for_ingest(conn, scene["id"])
            build([IngestScene(scene_id=str(scene["id"]))], local_scheduler=local_scheduler)
            with catalog_db.connect(url) as conn:
                row = scenes.get_scene(conn, scene["id"])
            click.echo(
                f"tiles of scene {scene['id']}: {row['ingest_status']} {row['ingest_location']}"
            )
    if not local_scheduler:
        click.echo(
            f"visualiser: {scheduler_url()}/static/visualiser/index.html"
            f"#tab=graph&taskId={task.task_id}"
        )


@cli.command("demo-imports")
@click.option("--local-scheduler", is_flag=True, help="Use the in-process scheduler, not luigid.")
@click.option("--port", default=7822, show_default=True, help="Port of the local STAC API.")
def demo_imports(local_scheduler, port):
    """Import a day of the sample Landsat and Sentinel-2 scenes from a local mirror.

    Builds the mirror under RF_HOME/mirror from examples/mirror (Sentinel-2 bucket layout,
    Landsat bucket with MTLs), serves its STAC items from a local STAC API server, and runs
    the sentinel2, landsat and sentinel2-stac imports of their days. A second run finds the
    days complete and does nothing.
    """
    import datetime

    from rf_pipelines import mirror
    from rf_pipelines.catalog import db as catalog_db
    from rf_pipelines.catalog import imports
    from rf_pipelines.tasks import ImportDay
    from rf_pipelines.tasks.runner import build, scheduler_running

    settings = config.settings()
    url = _database()
    built = mirror.build_local(settings.home / "mirror")
    with services.stac_api(built["item_files"], settings.home / "services" / "stac", port) as api:
        os.environ.update(
            RF_SENTINEL2_ROOT=built["sentinel2_root"],
            RF_LANDSAT_STAC_URL=api,
            RF_SENTINEL2_STAC_URL=api,
            RF_ASSET_MIRRORS=f"{mirror.LANDSAT_BUCKET}={built['landsat_root']}",
        )
        config.settings.cache_clear()
        days = {s: datetime.date.fromisoformat(d) for s, d in built["days"].items()}
        tasks = [ImportDay(source=s, day=d, run_day=d) for s, d in days.items()]
        result = build(tasks, local_scheduler=local_scheduler or not scheduler_running())
    click.echo(result.summary_text)
    with catalog_db.connect(url) as conn:
        for source, day in days.items():
            click.echo(json.dumps(imports.day_report(conn, source, day), default=str))
            for scene in imports.day_scenes(conn, source, day):
                click.echo("  " + json.dumps(scene, default=str))


def _database():
    """The catalog URL, after checking it answers and its schema is current."""
    from rf_pipelines.catalog import db as catalog_db
    from rf_pipelines.catalog import migrate

    url = config.settings().database_url
    catalog_db.check(url)
    migrate.require_current(url)
    return url


def _echo_json(value):
    click.echo(json.dumps(value, indent=2, default=str))


@cli.group(cls=_Group)
def upload():
    """User uploads: create, process, show, replace a file."""


@upload.command("create")
@click.argument("sources", nargs=-1, required=True)
@click.option("--project", help="Project id, or a name (created if missing).")
@click.option("--owner", default="rf-user", show_default=True, help="Owner of the scenes.")
@click.option(
    "--datasource", default="User uploads", show_default=True, help="Datasource name of the scenes."
)
def upload_create(sources, project, owner, datasource):
    """Copy local files, folders or s3:// prefixes (their .tif/.tiff) into a new upload.

    Prints the upload's id; the upload is UPLOADED, ready for `upload process`.
    """
    from rf_pipelines import uploading

    _database()
    click.echo(uploading.create_upload(sources, owner, datasource, project))


@upload.command("process")
@click.argument("upload_id")
@click.option("--local-scheduler", is_flag=True, help="Use the in-process scheduler, not luigid.")
@click.option("--workers", default=1, show_default=True, help="Parallel worker processes.")
def upload_process(upload_id, local_scheduler, workers):
    """Run the upload workflow; print the upload as JSON; exit 0 only if it is COMPLETE.

    Uses luigid when it answers, else the local scheduler.
    """
    from rf_pipelines.catalog import db as catalog_db
    from rf_pipelines.catalog import uploads
    from rf_pipelines.progress import watching
    from rf_pipelines.tasks import ProcessUpload
    from rf_pipelines.tasks.runner import build

    url = _database()
    with catalog_db.connect(url) as conn:
        uploads.check_processable(uploads.get_upload(conn, upload_id))
        total = len(uploads.list_files(conn, upload_id))

    def files_done():
        with catalog_db.connect(url) as conn:
            files = uploads.list_files(conn, upload_id)
        return sum(f["status"] in ("SUCCESS", "FAILURE") for f in files)

    try:
        with watching(f"upload {upload_id}", total, files_done):
            build(
                [ProcessUpload(upload_id=upload_id)],
                local_scheduler=local_scheduler or None,
                workers=workers,
            )
    finally:
        with catalog_db.connect(url) as conn:
            _echo_json(uploads.upload_summary(conn, upload_id))


@upload.command("show")
@click.argument("upload_id")
def upload_show(upload_id):
    """Print the upload as JSON: status, and per file its status, error, scene and outputs."""
    from rf_pipelines.catalog import db as catalog_db
    from rf_pipelines.catalog import uploads

    with catalog_db.connect(_database()) as conn:
        _echo_json(uploads.upload_summary(conn, upload_id))


@upload.command("replace")
@click.argument("upload_id")
@click.argument("source")
def upload_replace(upload_id, source):
    """Replace the upload's file of the same name with SOURCE; the next `upload process`
    redoes that file alone."""
    from rf_pipelines import uploading

    _database()
    uploading.replace_file(upload_id, source)
    click.echo(f"replaced {source.rsplit('/', 1)[-1]} in upload {upload_id}")


def _parse_day(value, option):
    import datetime

    from rf_pipelines.errors import InvalidInput

    try:
        return datetime.date.fromisoformat(value)
    except (TypeError, ValueError) as err:
        raise InvalidInput(f"{option} {value!r} is not a date (YYYY-MM-DD)") from err


@cli.command("import")
@click.argument("source")
@click.option("--date", "day", help="Day to import (YYYY-MM-DD); default today (UTC).")
@click.option(
    "--lookback",
    default=0,
    show_default=True,
    help="Also re-check this many previous days for scenes published late.",
)
@click.option("--start", help="Backfill from this day (YYYY-MM-DD)...")
@click.option("--stop", help="...to this day, inclusive.")
@click.option("--local-scheduler", is_flag=True, help="Use the in-process scheduler, not luigid.")
@click.option("--workers", default=1, show_default=True, help="Parallel worker processes.")
def import_command(source, day, lookback, start, stop, local_scheduler, workers):
    """Import SOURCE's scenes of a day (with a look-back), or backfill a range of days.

    Prints one JSON line per day; exits 0 only when every day is COMPLETE.
    """
    import datetime

    from rf_pipelines import sources
    from rf_pipelines.catalog import db as catalog_db
    from rf_pipelines.catalog import imports
    from rf_pipelines.errors import InvalidInput
    from rf_pipelines.progress import watching
    from rf_pipelines.tasks import ImportDay
    from rf_pipelines.tasks.runner import build

    sources.get_source(source)
    if not 0 <= lookback <= 366:
        raise InvalidInput(f"--lookback {lookback} must be between 0 and 366 days")
    today = datetime.datetime.now(datetime.UTC).date()
    if start or stop:
        if day or not (start and stop):
            raise InvalidInput("a backfill needs both --start and --stop, and no --date")
        first, last = _parse_day(start, "--start"), _parse_day(stop, "--stop")
        if first > last:
            raise InvalidInput(f"--start {first} is after --stop {last}")
        days = [first + datetime.timedelta(n) for n in range((last - first).days + 1)]
        run_day = None
    else:
        run_day = _parse_day(day, "--date") if day else today
        days = [run_day - datetime.timedelta(n) for n in range(lookback, -1, -1)]
    if max(days) > today:
        raise InvalidInput(f"{max(days)} is in the future")
    url = _database()
    with catalog_db.connect(url) as conn:
        done = imports.complete_days(conn, source, min(days), max(days))
    # A backfill skips complete days with this one query; a daily run re-checks its days.
    todo = [d for d in days if run_day is not None or d not in done]
    tasks = [ImportDay(source=source, day=d, run_day=run_day or d) for d in todo]
    started = datetime.datetime.now(datetime.UTC)

    def days_done():
        with catalog_db.connect(url) as conn:
            return imports.days_finished_since(conn, source, todo, started)

    try:
        if tasks:
            with watching(f"{source} days", len(tasks), days_done):
                build(tasks, local_scheduler=local_scheduler or None, workers=workers)
    finally:
        with catalog_db.connect(url) as conn:
            reports = [imports.day_report(conn, source, d) or {"day": str(d)} for d in days]
        for report in reports:
            click.echo(json.dumps({"source": source, **report}, default=str))
        _report_import(source, reports)


def _report_import(source, reports):
    """With ``[RfNotify] on_import_complete``, one message for the whole import command."""
    from rf_pipelines import notify

    if not notify.RfNotify().on_import_complete:
        return
    statuses = [r.get("status") or "NOT RUN" for r in reports]
    subject = (
        f"[rf-pipelines] import {source}: {statuses.count('COMPLETE')}/{len(reports)} days complete"
    )
    body = "\n".join(json.dumps(r, default=str) for r in reports) + "\n"
    notify.send(subject, body)


@cli.command("listen")
@click.argument("queue_url")
@click.option("--once", is_flag=True, help="Stop when the queue is empty instead of waiting.")
@click.option("--wait-seconds", default=20, show_default=True, help="SQS long-poll wait.")
def listen_command(queue_url, once, wait_seconds):
    """Import scenes as their notifications arrive on the SQS queue QUEUE_URL.

    A message is deleted only after its scene is stored; a malformed one is rejected with its
    reason (to the queue's dead-letter queue when it has one). Prints a JSON line a message.
    """
    from rf_pipelines import listening

    _database()
    if not 0 <= wait_seconds <= 20:
        raise InvalidInput(f"--wait-seconds {wait_seconds} must be between 0 and 20")
    counts = listening.listen(
        queue_url,
        once=once,
        wait_seconds=wait_seconds,
        report=lambda line: click.echo(json.dumps(line)),
    )
    click.echo(json.dumps({"done": counts}))


@cli.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("task")
@click.argument("params", nargs=-1, type=click.UNPROCESSED)
@click.option("--local-scheduler", is_flag=True, help="Use the in-process scheduler, not luigid.")
@click.option("--workers", default=1, show_default=True, help="Parallel worker processes.")
@click.option(
    "--role",
    default="all",
    show_default=True,
    help="Run only tasks of these roles (light, spark, containers; comma-separated).",
)
def run_command(task, params, local_scheduler, workers, role):
    """Run TASK of the package on demand, through luigid: `run ProcessUpload --upload-id ID`.

    Exit codes: 0 done (or already complete), 3 a task failed, 4 scheduling failed,
    5 not run, 6 external data missing, 7 already running on another worker.
    """
    from rf_pipelines.routing import parse_roles
    from rf_pipelines.tasks.runner import build

    roles = parse_roles(role)
    instance = _task_from_args(task, list(params))
    result = build(
        [instance], local_scheduler=local_scheduler or None, workers=workers, roles=roles
    )
    click.echo(result.one_line_summary)


def _task_from_args(family, args):
    """The task of this package named ``family``, with parameters parsed the luigi way.

    Raises:
        InvalidInput: an unknown task or bad parameters (the message says which).
    """
    import luigi
    from luigi.cmdline_parser import CmdlineParser

    import rf_pipelines.tasks as package

    known = sorted(
        name
        for name, value in vars(package).items()
        if isinstance(value, type) and issubclass(value, luigi.Task)
    )
    if family not in known:
        raise InvalidInput(f"unknown task {family!r}; tasks: {', '.join(known)}")
    try:
        with CmdlineParser.global_instance([family, *args]) as parser:
            return parser.get_task_obj()
    except SystemExit as err:
        raise InvalidInput(f"{family}: bad parameters {' '.join(args)!r}") from err
    except (luigi.parameter.ParameterException, ValueError) as err:
        raise InvalidInput(f"{family}: {err}") from err


@cli.command("scheduler")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8082, show_default=True, help="Port to listen on.")
@click.option("--state-path", help="luigid's state file (default RF_HOME/scheduler/state.pickle).")
@click.option("--background", is_flag=True, help="Detach (pid and logs in RF_HOME/scheduler).")
def scheduler_command(address, port, state_path, background):
    """Start luigid for production: state file, task history in PostgreSQL (the /history
    pages), bound to 127.0.0.1 unless --address says otherwise."""
    from rf_pipelines import operations
    from rf_pipelines.catalog import db as catalog_db

    settings = config.settings()
    folder = settings.home / "scheduler"
    folder.mkdir(parents=True, exist_ok=True)
    history = settings.task_history_url
    text = operations.scheduler_config(state_path or folder / "state.pickle", history)
    catalog_db.ensure_database(history)
    cfg = folder / "luigid.cfg"
    cfg.write_text(text)
    argv = [services.which("luigid"), "--address", address, "--port", str(port)]
    if background:
        argv += ["--background", "--pidfile", str(folder / "pid"), "--logdir", str(folder)]
    os.environ["LUIGI_CONFIG_PATH"] = str(cfg)
    click.echo(f"luigid on http://{address}:{port} (history: {config.redact_url(history)})")
    if background:
        import subprocess

        subprocess.run(argv, check=True)
        return
    os.execv(argv[0], argv)


@cli.command("status")
@click.option("--limit", default=20, show_default=True, help="How many task runs to list.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
def status_command(limit, as_json):
    """Recent task runs from luigid's task history: state, duration, failures."""
    from rf_pipelines.catalog import history

    runs = history.recent_runs(config.settings().task_history_url, limit)
    for run in runs:
        if as_json:
            click.echo(json.dumps(run, default=str))
            continue
        seconds = "-" if run["seconds"] is None else f"{run['seconds']:.1f}s"
        started = run["started"].strftime("%Y-%m-%d %H:%M:%S") if run["started"] else "-"
        click.echo(f"{started}  {run['state']:<8} {seconds:>8}  {run['task_id']}")
    failed = [r for r in runs if r["state"] == "FAILED"]
    if not as_json:
        click.echo(f"{len(runs)} task runs, {len(failed)} failed")


@cli.command("reap")
@click.option("--older-than", default="2h", show_default=True, help="e.g. 30m, 2h, 1d.")
def reap_command(older_than):
    """Reset uploads stuck in PROCESSING and scenes stuck in INGESTING whose task luigid no
    longer runs, so that a rerun picks them up."""
    from rf_pipelines import operations
    from rf_pipelines.tasks.runner import scheduler_url

    age = operations.parse_duration(older_than)
    _echo_json(operations.reap(_database(), scheduler_url(), age))


@cli.command("ingest")
@click.argument("scene_id")
@click.option("--local-scheduler", is_flag=True, help="Use the in-process scheduler, not luigid.")
def ingest_command(scene_id, local_scheduler):
    """Ingest a scene: one COG of its bands, then its web mercator tiles rendered by Spark.

    Prints the scene's ingest status and tile location; exits 0 only when INGESTED.
    """
    from rf_pipelines.catalog import db as catalog_db
    from rf_pipelines.catalog import scenes
    from rf_pipelines.tasks import IngestScene
    from rf_pipelines.tasks.runner import build

    url = _database()
    scene_id = str(scenes.parse_scene_id(scene_id))
    with catalog_db.transaction(url) as conn:
        scenes.queue_for_ingest(conn, scene_id)
    try:
        build([IngestScene(scene_id=scene_id)], local_scheduler=local_scheduler or None)
    finally:
        with catalog_db.connect(url) as conn:
            scene = scenes.get_scene(conn, scene_id)
        _echo_json(
            {
                "scene": scene_id,
                "ingest_status": scene["ingest_status"],
                "ingest_location": scene["ingest_location"],
                "status_reason": scene["status_reason"],
            }
        )


@cli.group(cls=_Group)
def scene():
    """Scenes in the catalog."""


@scene.command("show")
@click.argument("scene_id")
def scene_show(scene_id):
    """Print the scene as JSON: metadata, footprints, images, bands, thumbnails, COG and
    STAC item URLs."""
    from rf_pipelines.catalog import db as catalog_db
    from rf_pipelines.catalog import scenes

    with catalog_db.connect(_database()) as conn:
        _echo_json(scenes.scene_details(conn, scenes.parse_scene_id(scene_id)))


def _scene_summary(scene):
    keys = ("id", "name", "datasource_id", "written_by", "modified_at", "ingest_location")
    summary = {key: scene[key] for key in keys}
    summary["stac_item"] = scene["scene_metadata"].get("stac_item_url")
    summary["thumbnails"] = {t["size"]: t["url"] for t in scene.get("thumbnails", [])}
    ring = scene["tile_footprint_4326"]["coordinates"][0]
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    summary["footprint_bbox_4326"] = [min(lons), min(lats), max(lons), max(lats)]
    return summary


def main():
    cli(prog_name="rf-pipelines")


if __name__ == "__main__":
    main()
