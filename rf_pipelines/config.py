"""Typed settings: luigi.cfg sections overridden by environment variables, validated once.

Precedence for every setting: environment variable, then luigi.cfg, then the embedded default
(a local folder and the PostgreSQL started by ``rf-pipelines services start``). Secrets are
never read from files: credentials come from the environment or an IAM role through boto3.
"""

import functools
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import luigi
import luigi.interface

from rf_pipelines.errors import ConfigError

LOCAL_HOST = "127.0.0.1"
LOCAL_DATABASE = "rf_pipelines"
# Ports of the local services (rf-pipelines services start); all bind to 127.0.0.1.
# RF_PORT_BASE=N moves them all to N.. N+9; RF_<SERVICE>_PORT moves one.
DEFAULT_PORTS = {
    "luigid": 8082,
    "postgres": 54329,
    "s3": 18333,
    "moto": 15000,
    # SeaweedFS's own master, volume and filer; each also takes its port + 10000 for gRPC.
    "s3_master": 19333,
    "s3_volume": 18080,
    "s3_filer": 18888,
    # The Spark standalone cluster (`services start spark`): its master, the master's web UI
    # (and /json/ status page), the worker's web UI. Spark's own defaults.
    "spark": 7077,
    "spark_ui": 8080,
    "spark_worker_ui": 8081,
}
PORT_ENV = {
    "luigid": "RF_LUIGID_PORT",
    "postgres": "RF_PG_PORT",
    "s3": "RF_S3_PORT",
    "moto": "RF_MOTO_PORT",
    "spark": "RF_SPARK_PORT",
    "spark_ui": "RF_SPARK_UI_PORT",
    "spark_worker_ui": "RF_SPARK_WORKER_UI_PORT",
}
_GRPC_OFFSET = 10000

DEFAULT_MAX_UPLOAD_PIXELS = 10_000_000_000

# luigi's RemoteScheduler reads [core] rpc_retry_attempts and rpc_retry_wait itself, but its
# `core` config class does not declare them, so every run warned that luigi.cfg's values go
# unused. They are used: tell luigi so (its own mechanism for such keys).
luigi.interface.core.ignore_unconsumed = set(
    getattr(luigi.interface.core, "ignore_unconsumed", set())
) | {"rpc_retry_attempts", "rpc_retry_wait"}

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_DB_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2")


class RfConfig(luigi.Config):
    """The ``[RfConfig]`` section of luigi.cfg; each key yields to its environment variable."""

    home = luigi.Parameter(
        default="",
        description="Folder for local service data and the default data root "
        "(env RF_HOME; default ./.rf-local).",
    )
    data_root = luigi.Parameter(
        default="",
        description="Where outputs go: a local folder or s3://bucket/prefix "
        "(env RF_DATA_ROOT; default {home}/data).",
    )
    database_url = luigi.Parameter(
        default="",
        description="PostgreSQL URL of the catalog, without a password: put that in PGPASSWORD "
        "or ~/.pgpass (env RF_DATABASE_URL; default the local PostgreSQL).",
    )
    max_upload_pixels = luigi.Parameter(
        default="",
        description="Largest width x height accepted in an upload file "
        "(env RF_MAX_UPLOAD_PIXELS; default 10,000,000,000).",
    )
    sentinel2_root = luigi.Parameter(
        default="",
        description="Root of the Sentinel-2 bucket layout (products/Y/M/D/..., tiles/...) "
        "(env RF_SENTINEL2_ROOT; default s3://sentinel-s2-l1c).",
    )
    sentinel2_stac_url = luigi.Parameter(
        default="", description="STAC API of source sentinel2-stac (env RF_SENTINEL2_STAC_URL)."
    )
    landsat_stac_url = luigi.Parameter(
        default="", description="STAC API of source landsat (env RF_LANDSAT_STAC_URL)."
    )
    landsat_collections = luigi.Parameter(
        default="",
        description="Comma-separated Landsat collections (env RF_LANDSAT_COLLECTIONS).",
    )
    asset_mirrors = luigi.Parameter(
        default="",
        description="Comma-separated PREFIX=MIRROR pairs: read asset hrefs starting with PREFIX "
        "from MIRROR instead (env RF_ASSET_MIRRORS).",
    )
    history_database_url = luigi.Parameter(
        default="",
        description="luigid's task history database (env RF_HISTORY_DATABASE_URL; default "
        "luigi_history on the catalog's server).",
    )
    s3_endpoint_url = luigi.Parameter(
        default="",
        description="Endpoint of an S3-compatible store (env AWS_ENDPOINT_URL_S3 or "
        "RF_S3_ENDPOINT_URL; default AWS itself).",
    )
    s3_access = luigi.Parameter(
        default="",
        description="How S3 prefixes are read: PREFIX=MODE,... with MODE signed, requester-pays "
        "or unsigned; added to the defaults for the public buckets (env RF_S3_ACCESS).",
    )
    runs_keep_days = luigi.Parameter(
        default="",
        description="Days the run folders under RF_HOME/runs (local task logs, failure "
        "records) are kept; published logs are not touched (env RF_RUNS_KEEP_DAYS; default 7).",
    )
    upload_processes = luigi.Parameter(
        default="",
        description="Processes that work on the files of one batch of an upload at once "
        "(env RF_UPLOAD_PROCESSES; default the cores this process may use).",
    )
    backfill_tasks = luigi.Parameter(
        default="",
        description="Most tasks a backfill (import --start/--stop) gives luigid at once: its "
        "range is scheduled in windows of days that fit (env RF_BACKFILL_TASKS; default 2000).",
    )
    scratch_dir = luigi.Parameter(
        default="",
        description="Local folder for files on their way to or from S3: a source being "
        "converted, a COG being written (env RF_SCRATCH_DIR; default the system's temporary "
        "folder). A conversion checks it has room before it starts.",
    )


@dataclass(frozen=True)
class Settings:
    """Resolved, validated settings.

    Attributes:
        home: folder of local service data.
        data_root: a local absolute path or an ``s3://bucket/prefix`` URL, without trailing slash.
        database_url: a libpq URL (``postgresql://...``) for psycopg2.
        s3_endpoint_url: endpoint URL of an S3-compatible store, or None for AWS.
        max_upload_pixels: largest width x height accepted in an upload file.
        upload_processes: processes working on one batch of an upload's files at once.
        scratch_dir: local folder for files on their way to or from S3.
        backfill_tasks: most tasks a backfill gives luigid at once (its window's tasks).
    """

    home: Path
    data_root: str
    database_url: str
    s3_endpoint_url: str | None
    max_upload_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS
    sentinel2_root: str = "s3://sentinel-s2-l1c"
    sentinel2_stac_url: str = "https://earth-search.aws.element84.com/v1"
    landsat_stac_url: str = "https://landsatlook.usgs.gov/stac-server"
    landsat_collections: tuple = ("landsat-c2l2-sr",)
    asset_mirrors: tuple = ()
    history_database_url: str = ""
    runs_keep_days: int = 7
    s3_access: tuple = ()
    upload_processes: int = 0
    scratch_dir: str = ""
    backfill_tasks: int = 2000

    @property
    def task_history_url(self):
        """luigid's task history database: RF_HISTORY_DATABASE_URL, else ``luigi_history``
        on the catalog's server."""
        return self.history_database_url or self.database_url.rsplit("/", 1)[0] + "/luigi_history"

    @property
    def sqlalchemy_url(self):
        """The database URL in the form SQLAlchemy 2 maps to psycopg2."""
        return "postgresql+psycopg2://" + self.database_url.split("://", 1)[1]


def _pick(env_names, cfg_value, cfg_key):
    """Returns (value, name of its source) for the first set environment variable or config key."""
    for name in env_names:
        if os.environ.get(name):
            return os.environ[name], name
    if cfg_value:
        return cfg_value, f"[RfConfig] {cfg_key} in luigi.cfg"
    return None, None


def local_home(cfg=None):
    """The folder of local service data, run folders and command logs: ``RF_HOME``, else
    ``[RfConfig] home``, else ``./.rf-local``."""
    cfg = cfg or RfConfig()
    value, _ = _pick(["RF_HOME"], cfg.home, "home")
    return Path(value or ".rf-local").expanduser().absolute()


def load_settings():
    """Reads and validates the settings.

    Returns:
        Settings.

    Raises:
        ConfigError: a value is malformed; the message names its source and the fix.
    """
    cfg = RfConfig()
    home = local_home(cfg)

    root, source = _pick(["RF_DATA_ROOT"], cfg.data_root, "data_root")
    data_root = parse_data_root(root, source) if root else str(home / "data")

    url, source = _pick(["RF_DATABASE_URL"], cfg.database_url, "database_url")
    database_url = parse_database_url(url, source) if url else local_database_url()

    endpoint, source = _pick(
        ["AWS_ENDPOINT_URL_S3", "RF_S3_ENDPOINT_URL"], cfg.s3_endpoint_url, "s3_endpoint_url"
    )
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"{source}: {endpoint!r} is not an endpoint URL; "
                "use http://host:port or https://host"
            )
    limit, source = _pick(["RF_MAX_UPLOAD_PIXELS"], cfg.max_upload_pixels, "max_upload_pixels")
    max_pixels = parse_positive_int(limit, source) if limit else DEFAULT_MAX_UPLOAD_PIXELS
    s2_root, source = _pick(["RF_SENTINEL2_ROOT"], cfg.sentinel2_root, "sentinel2_root")
    s2_root = parse_data_root(s2_root, source) if s2_root else Settings.sentinel2_root
    urls = {}
    for key, env in (
        ("sentinel2_stac_url", "RF_SENTINEL2_STAC_URL"),
        ("landsat_stac_url", "RF_LANDSAT_STAC_URL"),
    ):
        value, source = _pick([env], getattr(cfg, key), key)
        urls[key] = parse_http_url(value, source) if value else getattr(Settings, key)
    value, _ = _pick(["RF_LANDSAT_COLLECTIONS"], cfg.landsat_collections, "landsat_collections")
    collections = tuple(c.strip() for c in value.split(",") if c.strip()) if value else None
    value, source = _pick(["RF_ASSET_MIRRORS"], cfg.asset_mirrors, "asset_mirrors")
    mirrors = parse_mirrors(value, source) if value else ()
    history, source = _pick(
        ["RF_HISTORY_DATABASE_URL"], cfg.history_database_url, "history_database_url"
    )
    history = parse_database_url(history, source) if history else ""
    value, source = _pick(["RF_S3_ACCESS"], cfg.s3_access, "s3_access")
    access = parse_s3_access(value, source) if value else ()
    keep, source = _pick(["RF_RUNS_KEEP_DAYS"], cfg.runs_keep_days, "runs_keep_days")
    keep = parse_positive_int(keep, source) if keep else Settings.runs_keep_days
    value, source = _pick(["RF_UPLOAD_PROCESSES"], cfg.upload_processes, "upload_processes")
    processes = parse_positive_int(value, source) if value else usable_cores()
    value, source = _pick(["RF_SCRATCH_DIR"], cfg.scratch_dir, "scratch_dir")
    scratch = parse_scratch_dir(value, source) if value else tempfile.gettempdir()
    value, source = _pick(["RF_BACKFILL_TASKS"], cfg.backfill_tasks, "backfill_tasks")
    backfill_tasks = parse_positive_int(value, source) if value else Settings.backfill_tasks
    return Settings(
        home,
        data_root,
        database_url,
        endpoint or None,
        max_pixels,
        s2_root,
        landsat_collections=collections or Settings.landsat_collections,
        asset_mirrors=mirrors,
        history_database_url=history,
        runs_keep_days=keep,
        s3_access=access,
        upload_processes=processes,
        scratch_dir=scratch,
        backfill_tasks=backfill_tasks,
        **urls,
    )


def local_ports():
    """Ports of the local services: the defaults, all moved by ``RF_PORT_BASE`` (luigid at
    the base, then PostgreSQL, the S3 store, moto, SeaweedFS's master, volume and filer, and
    the Spark master, its web UI and the Spark worker's web UI), and luigid, PostgreSQL, the
    store, moto and the three Spark ports each set on its own by its ``RF_*_PORT`` variable.

    Raises:
        ConfigError: a value is not a port that leaves room for SeaweedFS's gRPC ports.
    """
    ports = dict(DEFAULT_PORTS)
    base = os.environ.get("RF_PORT_BASE")
    if base:
        first = _parse_port(base, "RF_PORT_BASE", span=len(ports) - 1)
        ports = {name: first + offset for offset, name in enumerate(DEFAULT_PORTS)}
    for name, env in PORT_ENV.items():
        if os.environ.get(env):
            ports[name] = _parse_port(os.environ[env], env)
    return ports


def _parse_port(value, source, span=0):
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1024 <= port <= 65535 - _GRPC_OFFSET - span:
        raise ConfigError(
            f"{source}: {value!r} is not a usable port; use a number from 1024 to "
            f"{65535 - _GRPC_OFFSET - span} (SeaweedFS also takes each port + {_GRPC_OFFSET})"
        )
    return port


def local_database_url(name=LOCAL_DATABASE):
    """URL of a database on the local PostgreSQL (``rf-pipelines services start``)."""
    return f"postgresql://postgres@{LOCAL_HOST}:{local_ports()['postgres']}/{name}"


def scheduler_url():
    """The luigid URL clients use: ``RF_SCHEDULER_URL``; else the local luigid's when
    ``RF_PORT_BASE`` or ``RF_LUIGID_PORT`` moved it; else ``[core]`` in luigi.cfg.

    Raises:
        ConfigError: RF_SCHEDULER_URL is not an http(s) URL.
    """
    if os.environ.get("RF_SCHEDULER_URL"):
        return parse_http_url(os.environ["RF_SCHEDULER_URL"], "RF_SCHEDULER_URL")
    if os.environ.get("RF_PORT_BASE") or os.environ.get("RF_LUIGID_PORT"):
        return f"http://{LOCAL_HOST}:{local_ports()['luigid']}"
    core = luigi.interface.core()
    return (core.scheduler_url or f"http://{core.scheduler_host}:{core.scheduler_port}").rstrip("/")


def parse_http_url(value, source):
    """An http(s) URL setting, without trailing slash."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{source}: {value!r} is not an http(s) URL")
    return value.rstrip("/")


def parse_mirrors(value, source):
    """``PREFIX=MIRROR,...`` -> ((prefix, mirror), ...), longest prefix first."""
    pairs = []
    for item in value.split(","):
        prefix, sep, mirror = item.strip().partition("=")
        if not sep or not prefix or not mirror:
            raise ConfigError(f"{source}: {item.strip()!r} is not PREFIX=MIRROR")
        pairs.append((prefix, mirror))
    return tuple(sorted(pairs, key=lambda p: -len(p[0])))


def parse_s3_access(value, source):
    """``s3://PREFIX=MODE,...`` -> ((prefix, mode), ...); MODE signed, requester-pays or
    unsigned.

    Raises:
        ConfigError: an entry that is not an s3:// prefix and a known mode.
    """
    from rf_pipelines.targets.access import MODES

    pairs = []
    for item in value.split(","):
        prefix, sep, mode = (part.strip() for part in item.strip().rpartition("="))
        if not sep or not prefix.startswith("s3://") or mode not in MODES:
            raise ConfigError(
                f"{source}: {item.strip()!r} is not s3://PREFIX=MODE with MODE one of "
                f"{', '.join(MODES)}"
            )
        pairs.append((prefix, mode))
    return tuple(pairs)


def parse_positive_int(value, source):
    """Parses a positive integer setting (underscores allowed: 10_000).

    Raises:
        ConfigError: not a positive integer.
    """
    try:
        number = int(str(value).replace("_", "").replace(",", ""))
    except ValueError:
        number = 0
    if number <= 0:
        raise ConfigError(f"{source}: {value!r} is not a positive integer")
    return number


def usable_cores(cpu_max="/sys/fs/cgroup/cpu.max"):
    """The cores this process may use: those it may run on, fewer when its cgroup's CPU
    quota (a container's limit) allows fewer."""
    cores = len(os.sched_getaffinity(0))
    try:
        with open(cpu_max) as src:
            quota, period = src.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return cores


def parse_scratch_dir(value, source="RF_SCRATCH_DIR"):
    """Validates the scratch folder: a local folder (made when missing).

    Raises:
        ConfigError: a URL, or a path that is not a folder.
    """
    if "://" in value:
        raise ConfigError(f"{source}: {value!r} must be a local folder, not a URL")
    path = Path(value).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{source}: {str(path)!r} is not a folder")
    return str(path)


def parse_data_root(value, source="RF_DATA_ROOT"):
    """Validates a data root and normalises it.

    Args:
        value: a local folder, ``file:///folder`` or ``s3://bucket/prefix``.
        source: the setting's name, for the error message.

    Returns:
        An absolute local path or an ``s3://`` URL, without trailing slash.

    Raises:
        ConfigError: unknown scheme or invalid bucket name.
    """
    if "://" not in value:
        return str(Path(value).expanduser().absolute())
    parts = urlsplit(value)
    if parts.scheme == "file":
        return str(Path(parts.path).absolute())
    if parts.scheme == "s3":
        if not _BUCKET.match(parts.netloc):
            raise ConfigError(
                f"{source}: {parts.netloc!r} in {value!r} is not a valid S3 bucket name "
                "(3-63 characters: lower-case letters, digits, dots and hyphens)"
            )
        return f"s3://{parts.netloc}/{parts.path.strip('/')}".rstrip("/")
    raise ConfigError(
        f"{source}: unknown URL scheme {parts.scheme!r} in {value!r}; "
        "use a local folder, file:///folder or s3://bucket/prefix"
    )


def parse_database_url(value, source="RF_DATABASE_URL"):
    """Validates a PostgreSQL URL and returns it in the libpq form ``postgresql://``.

    Raises:
        ConfigError: not a PostgreSQL URL, or a password written into it.
    """
    parts = urlsplit(value)
    if parts.scheme not in _DB_SCHEMES or not parts.netloc or not parts.path.strip("/"):
        raise ConfigError(
            f"{source}: {redact_url(value)!r} is not a PostgreSQL URL; "
            "use postgresql://user@host:port/database"
        )
    if parts.password and source and not source.startswith("RF_"):
        raise ConfigError(
            f"{source}: holds a password; remove it and set PGPASSWORD in the environment"
        )
    return urlunsplit(("postgresql",) + tuple(parts)[1:])


def redact_url(url):
    """Returns the URL with any password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


@functools.lru_cache(maxsize=1)
def settings():
    """The process's settings, loaded once; ``settings.cache_clear()`` reloads them."""
    return load_settings()


def mirrored(url):
    """``url`` read from its mirror when ``asset_mirrors`` names one for its prefix."""
    for prefix, mirror in settings().asset_mirrors:
        if url.startswith(prefix):
            return mirror + url[len(prefix) :]
    return url


_SPARK_MASTER = re.compile(
    r"^(local(\[(\d+|\*)(,\d+)?\])?"  # local, local[2], local[*], local[2,3]
    r"|spark://[^\s/:,]+:\d+(,[^\s/:,]+:\d+)*"  # standalone, one master or several (HA)
    r"|yarn|(k8s|mesos)://\S+)$"
)


def spark_master():
    """The Spark master the ingest submits to: ``RF_SPARK_MASTER``, else ``[spark] master``
    in luigi.cfg, else ``local[2]``.

    Raises:
        ConfigError: not a master URL spark-submit takes.
    """
    value, source = os.environ.get("RF_SPARK_MASTER", "").strip(), "RF_SPARK_MASTER"
    if not value:
        source = "[spark] master in luigi.cfg"
        value = luigi.configuration.get_config().get("spark", "master", "local[2]").strip()
    if not _SPARK_MASTER.match(value):
        raise ConfigError(
            f"{source}: {value!r} is not a Spark master; use local[N], spark://HOST:PORT, "
            "yarn or k8s://URL"
        )
    return value


def is_local_master(master):
    """True for ``local`` and ``local[...]``: Spark inside the submitting process."""
    return master == "local" or master.startswith("local[")


def spark_executor_wait_s():
    """How long the tile job on a cluster may be without any executor before it fails:
    ``RF_SPARK_EXECUTOR_WAIT_S``, default 300 seconds.

    Raises:
        ConfigError: not a positive number of seconds.
    """
    value = os.environ.get("RF_SPARK_EXECUTOR_WAIT_S", "").strip()
    return parse_positive_int(value, "RF_SPARK_EXECUTOR_WAIT_S") if value else 300
