"""The rf-pipelines command: thin; translates errors to one-line messages and exit codes.

By default a command prints its progress, its result and its errors, one line each; luigi's
own logging, warnings and tracebacks go to the command's log (``RF_HOME/logs/commands/``)
and to each task's log. ``--verbose`` shows them on the terminal as well.
"""

import contextlib
import datetime
import io
import json
import logging
import os
import sys

import click

from rf_pipelines import config, runs, services
from rf_pipelines.errors import (
    ALREADY_RUNNING,
    BAD_INPUT,
    RETRY_LATER,
    AlreadyRunning,
    BuildFailed,
    ConfigError,
    InvalidInput,
    PermanentError,
    RfError,
    TransientError,
)

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [pid %(process)d] %(message)s"
log = logging.getLogger("rf_pipelines.cli")


class RfCommandError(click.ClickException):
    """One ``Error: ...`` line on stderr per failed thing, and the exit code."""

    def __init__(self, lines, exit_code):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))
        self.exit_code = exit_code

    def show(self, file=None):
        for line in self.lines:
            click.echo(f"Error: {line}", err=True, file=file)


class _Console:
    """Where the command's logging goes: the day's command log always (one file a day under
    RF_HOME/logs/commands, each line with its pid); the terminal too with --verbose."""

    verbose = False
    log_path = None
    _handlers = []

    @classmethod
    def setup(cls, verbose):
        import luigi.configuration

        root = logging.getLogger()
        if not cls._handlers:
            day = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
            path = config.local_home() / "logs" / "commands" / f"{day}.log"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                handler = logging.FileHandler(path)  # opened now: a failure shows here
                handler.setFormatter(logging.Formatter(_LOG_FORMAT))
                cls.log_path = path
                os.environ[runs.COMMAND_LOG_ENV] = str(path)
            except OSError:
                # No log file: keep Python's last-resort handler from printing records.
                handler = logging.NullHandler()
            root.addHandler(handler)
            cls._handlers.append((root, handler))
            root.setLevel(logging.INFO)
        cls.verbose = cls.verbose or verbose
        # luigi configures its own logging to the terminal (DEBUG) unless told not to.
        cfg = luigi.configuration.get_config()
        if not cfg.has_section("core"):
            cfg.add_section("core")
        cfg.set("core", "no_configure_logging", "false" if cls.verbose else "true")
        logging.captureWarnings(not cls.verbose)
        if cls.verbose and len(cls._handlers) < 2:
            terminal = logging.StreamHandler(sys.stderr)
            terminal.setFormatter(logging.Formatter(_LOG_FORMAT))
            logging.getLogger("rf_pipelines").addHandler(terminal)
            cls._handlers.append((logging.getLogger("rf_pipelines"), terminal))

    @classmethod
    def reset(cls):
        """Forgets an earlier command's set-up (several commands in one process: tests)."""
        for logger, handler in cls._handlers:
            logger.removeHandler(handler)
            handler.close()
        cls._handlers, cls.verbose, cls.log_path = [], False, None
        os.environ.pop(runs.COMMAND_LOG_ENV, None)

    @classmethod
    def where(cls):
        return f"log: {cls.log_path}" if cls.log_path else "run with --verbose for details"


def _verbose_callback(ctx, param, value):
    if value:
        _Console.setup(True)


def _verbose_flag(callback):
    """The --verbose option, for the group and for every command."""
    return click.option(
        "--verbose",
        "-v",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=callback,
        help="Show luigi's logging, warnings and tracebacks on the terminal too.",
    )


class _Group(click.Group):
    """Turns the package's errors into one line on stderr and a distinct exit code; gives
    every command a --verbose option."""

    def add_command(self, cmd, name=None):
        if not isinstance(cmd, click.Group):
            _verbose_flag(_verbose_callback)(cmd)
        super().add_command(cmd, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BuildFailed as err:
            log.info("build failed:\n%s", err.summary)
            raise RfCommandError(err.lines, err.exit_code) from err
        except AlreadyRunning as err:
            raise RfCommandError(str(err), ALREADY_RUNNING) from err
        except PermanentError as err:
            raise RfCommandError(str(err), BAD_INPUT) from err
        except TransientError as err:
            raise RfCommandError(f"{err} (retry later)", RETRY_LATER) from err
        except RfError as err:
            raise RfCommandError(str(err), 1) from err
        except Exception as err:
            # Logged with its traceback (on the terminal too with --verbose).
            log.exception("unexpected error")
            if _unavailable(err):
                raise RfCommandError(
                    f"{runs.one_line(err)} (retry later; {_Console.where()})", RETRY_LATER
                ) from err
            raise RfCommandError(
                f"unexpected {runs.one_line(err)} ({_Console.where()})", 1
            ) from err


def _unavailable(error):
    """A service that did not answer: a dropped connection, a timeout, luigid gone."""
    from luigi.rpc import RPCError

    from rf_pipelines.errors import is_transient

    if isinstance(error, BrokenPipeError):
        return False  # the reader of our output went away (`| head`): not a service
    return isinstance(error, RPCError) or is_transient(error)


def _setup_console(ctx, param, value):
    _Console.reset()
    try:
        _Console.setup(value)
    except ConfigError as err:
        raise RfCommandError(str(err), BAD_INPUT) from err
    except Exception as err:  # a malformed luigi.cfg, a bad interpolation
        raise RfCommandError(f"configuration: {runs.one_line(err)}", BAD_INPUT) from err
    return value


@click.group(cls=_Group)
@click.version_option(package_name="rf_pipelines")
@_verbose_flag(_setup_console)
def cli():
    """Raster Foundry's imagery workflows on Luigi.

    Exit codes: 0 done, 2 bad input or configuration, 3 a task failed, 4 scheduling failed,
    5 not run, 6 missing external data, 7 already running elsewhere, 75 a service or API
    was unavailable (retry later).
    """


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


def _service_names(names, default):
    unknown = [n for n in names if n not in services.ALL_NAMES]
    if unknown:
        raise InvalidInput(
            f"unknown service {unknown[0]!r}; the services are {', '.join(services.ALL_NAMES)}"
        )
    return tuple(names) or default


@services_group.command("start")
@click.argument("names", nargs=-1, metavar="[NAME]...")
def services_start(names):
    """Start the local services (idempotent) and wait until each answers.

    \b
    With no NAME: postgres, s3, luigid and moto. `spark` starts a Spark standalone master
    and one worker (RF_SPARK_WORKER_CORES, default 2; RF_SPARK_WORKER_MEMORY, default 1g)
    from pyspark's own scripts; `services env` then exports RF_SPARK_MASTER and RF_SPARK_UI.
    """
    home = config.settings().home
    services.start(home, _service_names(names, services.NAMES))
    _print_status(home)


@services_group.command("stop")
@click.argument("names", nargs=-1, metavar="[NAME]...")
def services_stop(names):
    """Stop the local services (all, the Spark cluster included, with no NAME); nothing is
    left running."""
    home = config.settings().home
    services.stop(home, _service_names(names, services.ALL_NAMES))
    _print_status(home)


@services_group.command("status")
def services_status():
    """Show which local services run; exit 0 when all run, 1 when any does not."""
    states = _print_status(config.settings().home)
    if not all(s.running for s in states):
        sys.exit(1)


@services_group.command("env")
def services_env():
    """Print the export lines that point the package, boto3 and luigi at the local services
    (and, while the local Spark cluster runs, RF_SPARK_MASTER and RF_SPARK_UI)."""
    home = config.settings().home
    for key, value in {**services.local_env(home), **services.spark_env(home)}.items():
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
    from rf_pipelines.tasks.runner import build, scheduler_url

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
    local_scheduler = local_scheduler or None
    try:
        build([task], local_scheduler=local_scheduler)
    except BuildFailed as err:
        # The upload's status below says what became of each file; the errors follow it.
        failed = err
    else:
        failed = None
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
        click.echo(f"task history: {scheduler_url()}/history")
    if failed:
        raise failed


@cli.command("demo-imports")
@click.option("--local-scheduler", is_flag=True, help="Use the in-process scheduler, not luigid.")
@click.option("--port", default=7822, show_default=True, help="Port of the local STAC API.")
def demo_imports(local_scheduler, port):
    """Import a day of the sample Landsat and Sentinel-2 scenes from a local mirror.

    Builds the mirror under RF_HOME/mirror from the package's sample metadata (Sentinel-2
    bucket layout, Landsat bucket with MTLs), serves its STAC items from a local STAC API
    server, and runs the sentinel2, landsat and sentinel2-stac imports of their days. A
    second run finds the days complete and does nothing.
    """
    import datetime

    from rf_pipelines import mirror
    from rf_pipelines.catalog import db as catalog_db
    from rf_pipelines.catalog import imports
    from rf_pipelines.tasks import ImportDay
    from rf_pipelines.tasks.runner import build

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
        try:
            build(tasks, local_scheduler=local_scheduler or None)
        except BuildFailed as err:
            failed = err
        else:
            failed = None
    with catalog_db.connect(url) as conn:
        for source, day in days.items():
            click.echo(json.dumps(imports.day_report(conn, source, day), default=str))
            for scene in imports.day_scenes(conn, source, day):
                click.echo("  " + json.dumps(scene, default=str))
    if failed:
        raise failed


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

    Runs through luigid (exit 75 when it does not answer), or in-process with
    --local-scheduler.
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
    """Print the upload as JSON: status, notes, and per file its status, error, sidecars,
    scene and outputs."""
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
@click.option(
    "--from-geoparquet",
    "geoparquet",
    multiple=True,
    metavar="PATH_OR_S3_URL",
    help="Import every item of this stac-geoparquet file instead (repeat for more files).",
)
@click.option("--local-scheduler", is_flag=True, help="Use the in-process scheduler, not luigid.")
@click.option("--workers", default=1, show_default=True, help="Parallel worker processes.")
def import_command(source, day, lookback, start, stop, geoparquet, local_scheduler, workers):
    """Import SOURCE's scenes of a day (with a look-back), or backfill a range of days.

    \b
    SOURCE is one of:
      sentinel2              the Sentinel-2 bucket layout (RF_SENTINEL2_ROOT)
      landsat                the USGS STAC API, each item completed from its MTL
      sentinel2-stac         Earth Search's sentinel-2-l2a collection
      stac:COLLECTION@URL    any STAC API collection

    \b
    Examples:
      rf-pipelines import landsat --date 2024-05-01 --lookback 3
      rf-pipelines import sentinel2-stac --from-geoparquet s3://bucket/s2-2023-10.parquet

    Prints one JSON line per day (per file with --from-geoparquet); exits 0 only when every
    day (every row) is imported. A backfill gives luigid a window of days at a time
    (RF_BACKFILL_TASKS tasks at most, default 2000); a failed day does not stop the next
    windows, a service away (exit 75) or a bad setting (2) does.
    """
    import datetime

    from rf_pipelines import sources
    from rf_pipelines.catalog import db as catalog_db
    from rf_pipelines.catalog import imports
    from rf_pipelines.errors import InvalidInput
    from rf_pipelines.progress import watching
    from rf_pipelines.tasks import ImportDay, backfill
    from rf_pipelines.tasks.runner import build

    if geoparquet:
        if day or start or stop or lookback:
            raise InvalidInput("--from-geoparquet takes no --date, --lookback, --start or --stop")
        _import_geoparquet(source, geoparquet, local_scheduler, workers)
        return
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
        if tasks and run_day is None:
            # A backfill: a window of days at a time, so that luigid is never swamped.
            with watching(f"{source} days", len(tasks), days_done):
                backfill.import_range(source, todo, local_scheduler or None, workers)
        elif tasks:
            with watching(f"{source} days", len(tasks), days_done):
                build(tasks, local_scheduler=local_scheduler or None, workers=workers)
    finally:
        with catalog_db.connect(url) as conn:
            reports = [imports.day_report(conn, source, d) or {"day": str(d)} for d in days]
        for report in reports:
            click.echo(json.dumps({"source": source, **report}, default=str))
        _report_import(source, reports)


def _import_geoparquet(source, urls, local_scheduler, workers):
    """One ImportGeoparquet task per file; one JSON line per file, from its report."""
    from rf_pipelines.errors import InvalidInput
    from rf_pipelines.targets import files
    from rf_pipelines.tasks.geoparquet import ImportGeoparquet, file_source, read_report
    from rf_pipelines.tasks.runner import build

    file_source(source)
    _database()
    tasks = []
    for url in urls:
        try:
            fingerprint = files.fingerprint(url)
        except FileNotFoundError as err:
            raise InvalidInput(f"--from-geoparquet {url}: no such file or object") from err
        if not files.is_s3(url) and not _is_parquet(url):
            raise InvalidInput(f"--from-geoparquet {url}: not a Parquet file")
        tasks.append(ImportGeoparquet(source=source, url=url, fingerprint=fingerprint))
    done = {task.task_id for task in tasks if task.complete()}
    try:
        build(tasks, local_scheduler=local_scheduler or None, workers=workers)
    finally:
        reports = []
        for task in tasks:
            report = read_report(task) or {"source": source, "file": task.url, "status": "NOT RUN"}
            if task.task_id in done:  # this version of the file was imported before
                report["read_again"] = False
            reports.append(report)
            click.echo(json.dumps(report, default=str))
        _report_import(source, reports)


def _is_parquet(path):
    """Whether a local file starts and ends as Parquet does (``PAR1``)."""
    with open(path, "rb") as src:
        head = src.read(4)
        src.seek(max(0, os.path.getsize(path) - 4))
        return head == b"PAR1" and src.read(4) == b"PAR1"


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
@click.option(
    "--batch",
    default=10,
    show_default=True,
    help="Messages taken at a time (1-10); 1 shares long upload jobs among listeners.",
)
def listen_command(queue_url, once, wait_seconds, batch):
    """Import scenes, process uploads and ingest scenes as their messages arrive on the SQS
    queue QUEUE_URL.

    A message stays invisible to other listeners while it waits and runs, and is deleted
    only after its scene is stored or its job is done; a malformed or bad one is rejected
    with its reason (to the queue's dead-letter queue when it has one); a transient failure
    leaves it for a later delivery. SIGTERM finishes the current message, gives the others
    back and exits 0. Prints one JSON line for each message, and a last line with the counts.
    """
    from rf_pipelines import listening

    _database()
    if not 0 <= wait_seconds <= 20:
        raise InvalidInput(f"--wait-seconds {wait_seconds} must be between 0 and 20")
    if not 1 <= batch <= 10:
        raise InvalidInput(f"--batch {batch} must be between 1 and 10")
    counts = listening.listen(
        queue_url,
        once=once,
        wait_seconds=wait_seconds,
        batch=batch,
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

    Exit codes: 0 done (or already complete), 2 bad task name, parameters or ids,
    3 a task failed, 4 scheduling failed, 5 not run, 6 external data missing, 7 already
    running on another worker, 75 a service or API was unavailable.
    """
    from rf_pipelines.routing import parse_roles
    from rf_pipelines.tasks.runner import build

    roles = parse_roles(role)
    instance = _task_from_args(task, list(params))
    build([instance], local_scheduler=local_scheduler or None, workers=workers, roles=roles)
    click.echo(f"done: {instance.task_id}")


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
    usage = io.StringIO()
    try:
        # argparse prints its usage and complaint itself; keep them for the one line.
        with contextlib.redirect_stderr(usage), contextlib.redirect_stdout(io.StringIO()):
            with CmdlineParser.global_instance([family, *args]) as parser:
                return parser.get_task_obj()
    except SystemExit as err:
        complaint = usage.getvalue().strip().splitlines()[-1:] or [""]
        reason = complaint[0].split(": error: ", 1)[-1]
        names = [f"--{name.replace('_', '-')}" for name, _ in getattr(package, family).get_params()]
        raise InvalidInput(
            f"{family}: bad parameters {' '.join(args)!r}: {reason}; "
            f"its parameters: {', '.join(names) or 'none'}"
        ) from err
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
    from rf_pipelines import scheduler
    from rf_pipelines.catalog import db as catalog_db

    settings = config.settings()
    folder = settings.home / "scheduler"
    folder.mkdir(parents=True, exist_ok=True)
    history = settings.task_history_url
    text = scheduler.luigid_config(state_path or folder / "state.pickle", history)
    catalog_db.ensure_database(history)
    cfg = folder / "luigid.cfg"
    cfg.write_text(text)
    argv = scheduler.luigid_argv(address, port, folder if background else None)
    os.environ["LUIGI_CONFIG_PATH"] = str(cfg)
    click.echo(
        f"luigid on http://{address}:{port} (history: {config.redact_url(history)}; "
        f"task logs from {settings.data_root})"
    )
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
    """Ingest a scene: one COG of its bands, then its web mercator tiles rendered by Spark
    (on RF_SPARK_MASTER, else [spark] master in luigi.cfg; a cluster needs an s3:// data
    root).

    Prints the scene's ingest status and tile location; exits 0 only when INGESTED.
    """
    from rf_pipelines.catalog import db as catalog_db
    from rf_pipelines.catalog import scenes
    from rf_pipelines.tasks import IngestScene
    from rf_pipelines.tasks.ingest import checked_master
    from rf_pipelines.tasks.runner import build

    url = _database()
    scene_id = str(scenes.parse_scene_id(scene_id))
    checked_master()  # a bad Spark setting fails here, before the scene is queued
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
@click.option("--full", is_flag=True, help="Print the footprint geometries in full.")
def scene_show(scene_id, full):
    """Print the scene as JSON: metadata, images, bands, thumbnails, COG and STAC item URLs.

    Footprints are shown as their bounding box and vertex count; --full prints them whole.
    """
    from rf_pipelines.catalog import db as catalog_db
    from rf_pipelines.catalog import scenes

    with catalog_db.connect(_database()) as conn:
        details = scenes.scene_details(conn, scenes.parse_scene_id(scene_id))
    _echo_json(details if full else _compact_geometries(details))


def _compact_geometries(value):
    """``value`` with every GeoJSON geometry replaced by its type, bbox and vertex count."""
    if isinstance(value, dict):
        if value.get("type") in _GEOMETRY_TYPES and "coordinates" in value:
            points = list(_positions(value["coordinates"]))
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            bbox = [min(xs), min(ys), max(xs), max(ys)] if points else []
            return {"type": value["type"], "bbox": bbox, "vertices": len(points)}
        return {key: _compact_geometries(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_compact_geometries(item) for item in value]
    return value


_GEOMETRY_TYPES = {"Polygon", "MultiPolygon", "LineString", "MultiLineString", "MultiPoint"}


def _positions(coordinates):
    if coordinates and isinstance(coordinates[0], (int, float)):
        yield coordinates
        return
    for item in coordinates:
        yield from _positions(item)


def _scene_summary(scene):
    keys = ("id", "name", "datasource_id", "written_by", "modified_at", "ingest_location")
    summary = {key: scene[key] for key in keys}
    summary["stac_item"] = scene["scene_metadata"].get("stac_item_url")
    summary["thumbnails"] = {t["size"]: t["url"] for t in scene.get("thumbnails", [])}
    points = list(_positions(scene["tile_footprint_4326"]["coordinates"]))
    lons, lats = [p[0] for p in points], [p[1] for p in points]
    summary["footprint_bbox_4326"] = [min(lons), min(lats), max(lons), max(lats)]
    return summary


def main():
    cli(prog_name="rf-pipelines")


if __name__ == "__main__":
    main()
