"""Scene ingest on a real Spark standalone cluster (master and worker started from pyspark's
own scripts by ``services.start(home, ["spark"])``, as ``rf-pipelines services start spark``
does): RenderTiles runs as an application of the cluster, in client mode, its executors
importing this package from the archive shipped with the job and reading and writing
through the object store."""

import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from click.testing import CliRunner

from rf_pipelines import config, services, uploading
from rf_pipelines.catalog import db, scenes, uploads
from rf_pipelines.cli import cli
from rf_pipelines.errors import ConfigError, ServiceUnavailable
from rf_pipelines.targets import files
from rf_pipelines.tasks import ProcessUpload, RenderTiles
from rf_pipelines.tasks.runner import build
from tests import rasters
from tests.conftest import HOME


@pytest.fixture(scope="session")
def spark_cluster(local_services):
    """The session's Spark cluster: (master URL, master web UI URL)."""
    services.start(HOME, [services.SPARK])
    try:
        yield services.spark_urls()
    finally:
        services.stop(HOME, [services.SPARK])


@pytest.fixture()
def s3_root(s3_bucket, database_url, settings_env, request):
    root = f"s3://{s3_bucket}/{request.node.name}"
    settings_env.setenv("RF_DATA_ROOT", root)
    settings_env.setenv("RF_DATABASE_URL", database_url)
    return root


def _uploaded_scene(database_url):
    upload_id = uploading.create_upload([str(rasters.GEOTIFF / "RGB.byte.tif")], "cluster")
    build([ProcessUpload(upload_id=str(upload_id))])
    with db.connect(database_url) as conn:
        return str(uploads.upload_summary(conn, upload_id)["files"][0]["scene_id"])


def _status_page(ui):
    with urllib.request.urlopen(ui + "/json/", timeout=5) as resp:
        return json.loads(resp.read())


def _finished_app(ui, name, timeout=30):
    """The master's record of the finished application ``name`` (it lists it once the driver
    has gone)."""
    deadline = time.monotonic() + timeout
    while True:
        page = _status_page(ui)
        done = [app for app in page["completedapps"] if app["name"] == name]
        if done or time.monotonic() > deadline:
            return done, page
        time.sleep(0.5)


def test_render_tiles_runs_as_an_application_of_the_cluster(
    spark_cluster, s3_root, database_url, settings_env
):
    data_root = s3_root
    master, ui = spark_cluster
    settings_env.setenv("RF_SPARK_MASTER", master)
    scene_id = _uploaded_scene(database_url)

    result = CliRunner().invoke(cli, ["ingest", scene_id])
    assert result.exit_code == 0, result.output

    done, page = _finished_app(ui, f"RenderTiles-{scene_id}")
    assert len(done) == 1, page
    app = done[0]
    assert app["state"] == "FINISHED" and app["cores"] >= 1, app
    with db.connect(database_url) as conn:
        scene = scenes.get_scene(conn, scene_id)
    assert scene["ingest_status"] == "INGESTED"
    folder = scene["ingest_location"][: -len("/{z}/{x}/{y}.png")]
    assert folder.startswith(data_root)
    plan = json.loads(files.read_bytes(files.join(folder, "plan.json")))
    assert plan["written"] == 22 and len(files.list_files(folder, (".png",))) == 22
    # The executors imported this package from the archive the job shipped, not from an
    # installation they happen to share with the submitting worker.
    assert plan["executor_code"] and all(
        path.endswith("rf_pipelines.zip/rf_pipelines") for path in plan["executor_code"]
    ), plan["executor_code"]


def test_a_cluster_with_a_local_data_root_is_refused_before_anything_runs(
    spark_cluster, database_url, settings_env, tmp_path
):
    settings_env.setenv("RF_DATA_ROOT", str(tmp_path / "data"))
    settings_env.setenv("RF_DATABASE_URL", database_url)
    master, ui = spark_cluster
    scene_id = _uploaded_scene(database_url)
    settings_env.setenv("RF_SPARK_MASTER", master)
    result = CliRunner().invoke(cli, ["ingest", scene_id])
    assert result.exit_code == 2, result.output
    assert "RF_DATA_ROOT" in result.output and "s3:// data root" in result.output
    with db.connect(database_url) as conn:
        assert scenes.get_scene(conn, scene_id)["ingest_status"] == "NOTINGESTED"
    assert not [a for a in _status_page(ui)["completedapps"] if scene_id in a["name"]]


def test_a_malformed_master_is_one_line_naming_it(database_url, settings_env):
    settings_env.setenv("RF_DATABASE_URL", database_url)
    settings_env.setenv("RF_SPARK_MASTER", "spark//nowhere")
    result = CliRunner().invoke(cli, ["ingest", "6f1b5a3e-8a4c-4e8e-9a36-3a1b7c0f0c11"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "Error: RF_SPARK_MASTER: 'spark//nowhere' is not a Spark master; use local[N], "
        "spark://HOST:PORT, yarn or k8s://URL"
    ]


def test_a_port_taken_fails_the_start_and_leaves_nothing_running(spark_cluster, tmp_path):
    """A second stack on the same ports (the session's cluster holds them): Spark would move
    to the next free port; here the start fails at once, naming the log."""
    other = tmp_path / "other-home"
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="spark master exited; log: "):
        services.start(other, [services.SPARK])
    assert time.monotonic() - started < services.SPARK_START_TIMEOUT_S
    assert not _java_processes_of(other)
    assert services.spark_running(HOME)  # the session's cluster is untouched


def test_an_unknown_service_name_is_one_line():
    result = CliRunner().invoke(cli, ["services", "start", "sprak"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: unknown service 'sprak'; the services are postgres, s3, luigid, moto, spark"
    ]


def _java_processes_of(folder):
    """Pids of processes whose working directory is under ``folder`` (the master, the
    worker and the executors it started run there)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            if cwd.startswith(str(folder)):
                found.append(int(entry))
    return found


BLOCKER = """
import sys, time
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master(sys.argv[1]).appName("blocker")
         .config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1")
         .config("spark.driver.bindAddress", "127.0.0.1").getOrCreate())
spark.sparkContext.parallelize(range(4), 4).count()  # the worker's cores are this app's now
print("holding", flush=True)
sys.stdin.read()  # until the test closes it
spark.stop()
"""


@pytest.fixture()
def cores_taken(spark_cluster):
    """Another application holding every core of the cluster while the test runs."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", BLOCKER, spark_cluster[0]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "holding"
        yield proc
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_an_application_without_executors_fails_instead_of_waiting_for_ever(
    spark_cluster, cores_taken, s3_root, database_url, settings_env
):
    master, ui = spark_cluster
    settings_env.setenv("RF_SPARK_MASTER", master)
    settings_env.setenv("RF_SPARK_EXECUTOR_WAIT_S", "10")
    scene_id = _uploaded_scene(database_url)
    waiting = [a for a in _status_page(ui)["activeapps"] if a["name"] == "blocker"]
    assert waiting and waiting[0]["cores"] == 2, _status_page(ui)["activeapps"]

    started = time.monotonic()
    result = CliRunner().invoke(cli, ["ingest", scene_id])
    assert result.exit_code == 3, result.output
    assert time.monotonic() - started < 240
    with db.connect(database_url) as conn:
        scene = scenes.get_scene(conn, scene_id)
    assert scene["ingest_status"] == "FAILED"
    assert scene["status_reason"].startswith("RenderTiles: ")
    assert f"no executor of {master} for 10 s" in scene["status_reason"], scene
    # What luigid shows of the failure is the driver's error, not spark-submit's
    # environment (luigi's ExternalProgramRunError prints it whole, credentials included).
    task_id = RenderTiles(scene_id=scene_id).task_id
    query = urllib.parse.quote(json.dumps({"task_id": task_id}))
    with urllib.request.urlopen(f"{config.scheduler_url()}/api/fetch_error?data={query}") as resp:
        shown = json.loads(resp.read())["response"]["error"]
    assert "NoExecutors: no executor of" in shown, shown
    assert "AWS_SECRET_ACCESS_KEY" not in shown + result.output
    # The cluster's cores come back: the same command then ingests the scene.
    cores_taken.stdin.close()
    cores_taken.wait(timeout=60)
    settings_env.delenv("RF_SPARK_EXECUTOR_WAIT_S")
    again = CliRunner().invoke(cli, ["ingest", scene_id])
    assert again.exit_code == 0, again.output


def test_a_master_that_does_not_answer_is_one_line_before_anything_runs(
    s3_root, database_url, settings_env
):
    settings_env.setenv("RF_SPARK_MASTER", "spark://127.0.0.1:9")
    scene_id = _uploaded_scene(database_url)
    result = CliRunner().invoke(cli, ["ingest", scene_id])
    assert result.exit_code == 75, result.output
    assert result.output.startswith(
        "Error: RF_SPARK_MASTER: no Spark master answers at spark://127.0.0.1:9;"
    )
    with db.connect(database_url) as conn:
        assert scenes.get_scene(conn, scene_id)["ingest_status"] == "NOTINGESTED"


def test_the_cluster_is_started_stopped_and_exported_from_the_command_line(
    spark_cluster, cores_taken, settings_env
):
    """Stops the session's cluster while an application's executors run, and starts it
    again."""
    settings_env.setenv("RF_HOME", str(HOME))
    master, ui = spark_cluster
    env = CliRunner().invoke(cli, ["services", "env"]).output.splitlines()
    assert f"export RF_SPARK_MASTER={master}" in env and f"export RF_SPARK_UI={ui}" in env
    status = CliRunner().invoke(cli, ["services", "status"])
    assert status.exit_code == 0 and re.search(r"^spark +running", status.output, re.M)
    assert master.startswith("spark://127.0.0.1:") and ui.startswith("http://127.0.0.1:")
    (worker,) = _status_page(ui)["workers"]
    assert (worker["state"], worker["cores"], worker["memory"]) == ("ALIVE", 2, 1024)

    folder = HOME / "services" / "spark"
    running = _java_processes_of(folder)
    executors = [p for p in running if "/worker/work/app-" in os.readlink(f"/proc/{p}/cwd")]
    assert len(running) > 2 and executors, running  # master, worker, the blocker's executor
    stopped = CliRunner().invoke(cli, ["services", "stop", "spark"])
    assert stopped.exit_code == 0, stopped.output
    assert not _java_processes_of(folder)
    assert "RF_SPARK_MASTER" not in CliRunner().invoke(cli, ["services", "env"]).output
    # The default services were left alone.
    assert all(s.running for s in services.status(HOME)), services.status(HOME)

    started = CliRunner().invoke(cli, ["services", "start", "spark"])
    assert started.exit_code == 0, started.output
    assert f"export RF_SPARK_MASTER={master}" in CliRunner().invoke(cli, ["services", "env"]).output


def test_the_worker_takes_its_bounds_from_the_environment(settings_env):
    settings_env.delenv(services.SPARK_WORKER_CORES_ENV, raising=False)
    settings_env.delenv(services.SPARK_WORKER_MEMORY_ENV, raising=False)
    assert services.spark_worker_resources() == (2, "1g")
    settings_env.setenv(services.SPARK_WORKER_CORES_ENV, "3")
    settings_env.setenv(services.SPARK_WORKER_MEMORY_ENV, "1536M")
    assert services.spark_worker_resources() == (3, "1536m")
    settings_env.setenv(services.SPARK_WORKER_MEMORY_ENV, "512m")
    with pytest.raises(ConfigError, match="less than the 1g an executor asks for"):
        services.spark_worker_resources()
    settings_env.setenv(services.SPARK_WORKER_MEMORY_ENV, "lots")
    result = CliRunner().invoke(cli, ["services", "start", "spark"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: RF_SPARK_WORKER_MEMORY: 'lots' is not an amount of memory; use e.g. 1g or 4g"
    ]


def test_executors_get_the_store_settings_and_never_credentials(s3_root, settings_env):
    settings_env.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-of-this-test")
    settings_env.setenv("AWS_SESSION_TOKEN", "t0ken-of-this-test")
    settings_env.setenv("RF_S3_ACCESS", "s3://bucket-a=unsigned,s3://bucket-b/x=requester-pays")
    task = RenderTiles(scene_id="6f1b5a3e-8a4c-4e8e-9a36-3a1b7c0f0c11")
    conf = task.conf
    assert conf["spark.executorEnv.RF_DATA_ROOT"] == s3_root
    assert conf["spark.executorEnv.AWS_ENDPOINT_URL_S3"] == config.settings().s3_endpoint_url
    assert config.parse_s3_access(conf["spark.executorEnv.RF_S3_ACCESS"], "test") == (
        config.settings().s3_access
    )
    command = " ".join(task.spark_command())
    assert "s3cr3t" not in command and "t0ken" not in command
