"""Scene ingest: the scene's bands as one COG, then its web mercator tiles rendered by Spark.

Graph for one scene::

    IngestScene(scene_id)      ingest_status INGESTED, ingest_location = the tiles' folder
      RenderTiles(scene_id)    PySpark job: {z}/{x}/{y}.png + plan.json + _SUCCESS
        SceneCog(scene_id)     bands warped to the finest resolution and stacked, as a COG

Every step moves the scene to INGESTING as it starts (from any state a failed or reaped run
left), and one that fails sets it FAILED with the reason. The Spark master and submit
options come from ``[spark]`` in luigi.cfg (``local[2]`` here; a cluster is a configuration
change).
"""

import hashlib
import json
import logging
import sys

import luigi
from luigi.contrib.external_program import ExternalProgramRunError
from luigi.contrib.spark import PySparkTask

from rf_pipelines import config, operations, services
from rf_pipelines.catalog import db, scenes
from rf_pipelines.catalog.statuses import IngestStatus
from rf_pipelines.errors import RfError
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
        if isinstance(exception, ExternalProgramRunError):
            # Its text ends with the program's environment: the reason is the driver's last
            # stderr line (its exception), never the environment.
            text = exception.err or exception.message
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
        self.report_progress("rendering tiles on Spark", 20)
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
        }
        super().run()
        self.report_progress("tiles rendered", 100)

    def main(self, sc, *args):
        from rf_pipelines.spark.pyramid_job import render_pyramid

        pinned = self.pinned
        plan = pinned["plan"]
        counts = render_pyramid(sc, pinned["cog"], pinned["folder"], plan)
        files.write_bytes(
            files.join(pinned["folder"], "plan.json"),
            json.dumps({**plan, **counts, "written_by": pinned["written_by"]}).encode(),
        )
        files.write_bytes(pinned["success"], b"")


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
