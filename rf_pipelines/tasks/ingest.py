"""Scene ingest: the scene's bands as one COG, then its web mercator tiles rendered by Spark.

Graph for one scene::

    IngestScene(scene_id)      ingest_status INGESTED, ingest_location = the tiles' folder
      RenderTiles(scene_id)    PySpark job: {z}/{x}/{y}.png + plan.json + _SUCCESS
        SceneCog(scene_id)     bands warped to the finest resolution and stacked, as a COG

Every step moves the scene to INGESTING as it starts (from any state a failed or reaped run
left), and one that fails sets it FAILED with the reason. The Spark master is
``RF_SPARK_MASTER``, else ``[spark] master`` in luigi.cfg (``local[2]``); the other submit
options come from ``[spark]``. On a cluster the job runs in client mode: this package goes
to the executors as a zip archive (``--py-files``), they read the scene COG from the object
store and write the tiles there, and the driver only lists tile coordinates.
"""

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import luigi
from luigi.contrib.external_program import ExternalProgramRunError
from luigi.contrib.spark import PySparkTask

from rf_pipelines import config, operations, services
from rf_pipelines.catalog import db, scenes
from rf_pipelines.catalog.statuses import IngestStatus
from rf_pipelines.errors import ConfigError, RfError, ServiceUnavailable
from rf_pipelines.imagery import pyramid
from rf_pipelines.targets import files
from rf_pipelines.tasks.base import RfTask

log = logging.getLogger(__name__)


class _SceneTask(RfTask):
    workflow = "ingest"
    scene_id = luigi.Parameter(description="The scene's id (UUID).")

    def object_id(self):
        return str(scenes.parse_scene_id(self.scene_id))

    def claim(self):
        return operations.Claim("scene", self.scene_id)

    def sources_digest(self):
        """8 hex digits of the scene's band sources: the scene COG and its tiles are made
        anew, at a new path, when the scene's files were (a bumped upload step, a replaced
        file)."""
        with db.connect(config.settings().database_url) as conn:
            sources = scenes.band_sources(conn, self.scene_id)
        return hashlib.sha1(json.dumps(sources).encode()).hexdigest()[:8]

    def set_status(self, status, reason=None):
        with db.transaction(config.settings().database_url) as conn:
            scenes.set_ingest_status(conn, self.scene_id, status, reason)

    def on_failure(self, exception):
        message = super().on_failure(exception)
        text = str(exception)
        short = (text.strip().splitlines() or [type(exception).__name__])[-1]
        try:
            self.set_status(IngestStatus.FAILED, f"{self.task_family}: {short[:500]}")
        except RfError as err:
            # The catalog is down: the failure is in the task log; `reap` and the next run
            # take the scene from INGESTING.
            log.error("could not record the failure of scene %s: %s", self.scene_id, err)
        return message

    def start(self):
        """The scene goes INGESTING as this step starts (``scenes.start_ingest``)."""

        def move():
            with db.transaction(config.settings().database_url) as conn:
                scenes.start_ingest(conn, self.scene_id)

        self.retry(move)


class SceneCog(_SceneTask):
    """The scene's bands, warped to the finest band's grid and stacked, as one COG."""

    def output(self):
        return self.file_target(f"{self.sources_digest()}/scene.tif")

    def run(self):
        self.start()
        with db.connect(config.settings().database_url) as conn:
            sources = scenes.band_sources(conn, self.scene_id)
        sources = [(config.mirrored(url), index, name) for url, index, name in sources]
        self.report_progress(f"stacking {len(sources)} bands", 10)
        with files.writing(self.output().path, suffix=".tif") as tmp:
            with files.gdal_env(sources[0][0] if sources else ""):
                pyramid.stack_bands(sources, tmp, f"scene {self.scene_id}")
        self.report_progress("scene COG written", 100)


class RenderTiles(_SceneTask, PySparkTask):
    """The tile pyramid of the scene's COG, rendered by executors reading the COG directly."""

    @property
    def name(self):
        return f"RenderTiles-{self.scene_id}"

    def requires(self):
        return SceneCog(scene_id=self.scene_id)

    def folder(self):
        return self.output_url(f"{self.sources_digest()}/tiles")

    def output(self):
        return files.target_for(files.join(self.folder(), "_SUCCESS"))

    @property
    def spark_submit(self):
        configured = luigi.configuration.get_config().get("spark", "spark-submit", None)
        return configured or services.which("spark-submit")

    @property
    def master(self):
        return config.spark_master()

    @property
    def py_files(self):
        # luigi's own `py-packages` ships a .tar.gz, which PySpark never puts on the
        # executors' path; this package goes as the zip archive PySpark imports from.
        shipped = [self.package_archive] if getattr(self, "package_archive", None) else []
        return [*(super().py_files or []), *shipped] or None

    @property
    def conf(self):
        conf = dict(super().conf or {})
        # Executors find the store as this worker does (no secrets: credentials come from
        # the executors' own environment or their hosts' IAM role).
        for key, value in executor_settings().items():
            conf.setdefault(f"spark.executorEnv.{key}", value)
        return conf

    @property
    def pyspark_python(self):
        return sys.executable

    @property
    def pyspark_driver_python(self):
        return sys.executable

    def program_environment(self):
        env = super().program_environment()
        env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        env["PYSPARK_PYTHON"] = env["PYSPARK_DRIVER_PYTHON"] = sys.executable
        return env

    def run(self):
        self.start()
        master = checked_master()
        self.report_progress(f"rendering tiles on Spark ({master})", 20)
        # The Spark driver unpickles this task in another process: it reads and writes where
        # this process decided, whatever the code or settings there say.
        cog_url = self.input().path
        with files.gdal_env(cog_url):
            plan = pyramid.plan(cog_url)  # here, so that bad input fails with its reason
        self.pinned = {
            "cog": cog_url,
            "folder": self.folder(),
            "success": self.output().path,
            "written_by": self.written_by,
            "plan": plan,
            "master": master,
            "executor_wait_s": config.spark_executor_wait_s(),
        }
        folder = tempfile.mkdtemp(prefix="rf-spark-")
        try:
            self.package_archive = package_archive(folder)
            super().run()
        except ExternalProgramRunError as err:
            # Its text holds spark-submit's whole environment, credentials included: it
            # must reach no log, no luigid page and no message. The driver's error does.
            why = driver_error(err.out or "", err.err or "")
            raise SparkJobFailed(f"{why} ({err.message.rstrip(':')})") from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.report_progress("tiles rendered", 100)

    def main(self, sc, *args):
        from rf_pipelines.spark.pyramid_job import executors_watched, render_pyramid

        pinned = self.pinned
        plan = pinned["plan"]
        if config.is_local_master(pinned["master"]):
            counts = render_pyramid(sc, pinned["cog"], pinned["folder"], plan)
        else:
            with executors_watched(sc, pinned["master"], pinned["executor_wait_s"]):
                counts = render_pyramid(sc, pinned["cog"], pinned["folder"], plan)
        files.write_bytes(
            files.join(pinned["folder"], "plan.json"),
            json.dumps({**plan, **counts, "written_by": pinned["written_by"]}).encode(),
        )
        files.write_bytes(pinned["success"], b"")


class SparkJobFailed(RfError):
    """spark-submit failed; the message is the driver's error."""


def driver_error(stdout, stderr):
    """The exception line of the Python driver's last traceback (spark-submit passes the
    driver's stderr to its stdout, and Spark logs its shutdown after it), else the last line
    of spark-submit's stderr."""
    for text in (stdout, stderr):
        lines = text.strip().splitlines()
        starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent")]
        if starts:
            for line in lines[starts[-1] + 1 :]:
                if line and not line[0].isspace():
                    return line
    lines = stderr.strip().splitlines()
    return lines[-1] if lines else ""


def checked_master():
    """The Spark master, checked against the data root: executors on a cluster read the COG
    and write the tiles through the object store, never through a local folder.

    Raises:
        ConfigError: the master is malformed, or a cluster's with a local data root, or the
            deploy mode is cluster (Spark runs no Python application so on a standalone
            cluster; this driver runs in the Luigi worker).
        ServiceUnavailable: a ``spark://`` master does not answer.
    """
    master = config.spark_master()
    config.spark_executor_wait_s()
    if config.is_local_master(master):
        return master
    root = config.settings().data_root
    if not files.is_s3(root):
        raise ConfigError(
            f"RF_DATA_ROOT: {root} is a local folder, which the executors of {master} cannot "
            "read or write; use an s3:// data root, or RF_SPARK_MASTER=local[2]"
        )
    mode = luigi.configuration.get_config().get("spark", "deploy-mode", None)
    if mode and mode.strip() != "client":
        raise ConfigError(
            f"[spark] deploy-mode in luigi.cfg: {mode!r}; the tile job's driver runs in the "
            "Luigi worker, use client (or leave it out)"
        )
    if master.startswith("spark://"):
        _answering(master)
    return master


def _answering(master):
    """Raises ServiceUnavailable unless one of a ``spark://`` URL's masters accepts a TCP
    connection (spark-submit would retry for a minute before saying so)."""
    import socket

    for address in master[len("spark://") :].split(","):
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
            return
        except OSError:
            continue
    raise ServiceUnavailable(
        f"RF_SPARK_MASTER: no Spark master answers at {master}; start the cluster "
        "(`rf-pipelines services start spark` locally) or point RF_SPARK_MASTER elsewhere"
    )


def package_archive(folder):
    """This package, as the code running now has it, zipped for ``--py-files``: what
    executors on other hosts import. Returns the archive's path."""
    import rf_pipelines

    root = Path(rf_pipelines.__file__).parent
    path = Path(folder) / "rf_pipelines.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        # Its modules only: code run on executors reads no package data.
        for item in sorted(root.rglob("*.py")):
            if "__pycache__" not in item.parts:
                archive.write(item, Path("rf_pipelines") / item.relative_to(root))
    return str(path)


# Settings the executors read (the data root's store and how to read it), passed to them as
# resolved here, whatever their hosts' luigi.cfg says; AWS's region when this worker has one.
def executor_settings():
    """{environment variable: value} of the settings executors need to reach the store."""
    settings = config.settings()
    values = {"RF_DATA_ROOT": settings.data_root}
    if settings.s3_endpoint_url:
        values["AWS_ENDPOINT_URL_S3"] = settings.s3_endpoint_url
    if settings.s3_access:
        values["RF_S3_ACCESS"] = ",".join(f"{p}={m}" for p, m in settings.s3_access)
    for key in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        if os.environ.get(key):
            values[key] = os.environ[key]
    return values


class IngestScene(_SceneTask):
    """Done when the scene is INGESTED with its tiles' location, by the steps' current
    versions (``lineage``): bumping a step ingests the scene again."""

    def requires(self):
        return RenderTiles(scene_id=self.scene_id)

    def output(self):
        return IngestedTarget(self.scene_id, self.lineage)

    def run(self):
        self.start()
        location = files.join(self.requires().folder(), "{z}/{x}/{y}.png")
        with db.transaction(config.settings().database_url) as conn:
            scenes.set_ingested(conn, self.scene_id, location, self.lineage)


class IngestedTarget(luigi.Target):
    """Exists when the scene is INGESTED, and, with ``lineage``, by those versions of the
    steps (``ingested_by``)."""

    def __init__(self, scene_id, lineage=None):
        self.scene_id = scene_id
        self.lineage = lineage

    def exists(self):
        with db.connect(config.settings().database_url) as conn:
            scene = scenes.get_scene(conn, self.scene_id)
        if scene["ingest_status"] != IngestStatus.INGESTED:
            return False
        return self.lineage is None or scene["ingested_by"] == self.lineage
