"""An ingest converges from every state a failure leaves: a Spark failure after the scene
COG was made, a reaped scene, a scene that was never queued."""

import pytest

from rf_pipelines import uploading
from rf_pipelines.catalog import db, scenes, uploads
from rf_pipelines.catalog.statuses import IngestStatus
from rf_pipelines.errors import BuildFailed, TransientError
from rf_pipelines.tasks import IngestScene, ProcessUpload, RenderTiles
from rf_pipelines.tasks.runner import build
from tests import rasters


@pytest.fixture()
def scene_id(tmp_path, database_url, monkeypatch):
    monkeypatch.setenv("RF_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("RF_DATABASE_URL", database_url)
    upload_id = uploading.create_upload([str(rasters.GEOTIFF / "byte.tif")], "recovery")
    build([ProcessUpload(upload_id=str(upload_id))], local_scheduler=True)
    with db.connect(database_url) as conn:
        return str(uploads.upload_summary(conn, upload_id)["files"][0]["scene_id"])


def _scene(database_url, scene_id):
    with db.connect(database_url) as conn:
        return scenes.get_scene(conn, scene_id)


def test_a_rerun_after_spark_failed_following_the_scene_cog_ends_ingested(
    scene_id, database_url, monkeypatch
):
    with db.transaction(database_url) as conn:
        scenes.queue_for_ingest(conn, scene_id)

    def spark_lost(self):
        raise TransientError("Spark: lost the executors")

    with monkeypatch.context() as patch:
        patch.setattr(RenderTiles, "run", spark_lost)
        with pytest.raises(BuildFailed):
            build([IngestScene(scene_id=scene_id)], local_scheduler=True)
    failed = _scene(database_url, scene_id)
    assert failed["ingest_status"] == IngestStatus.FAILED
    assert failed["status_reason"].startswith("RenderTiles: ")

    # The operator reruns `rf-pipelines ingest`: queued again, only RenderTiles runs.
    with db.transaction(database_url) as conn:
        scenes.queue_for_ingest(conn, scene_id)
    build([IngestScene(scene_id=scene_id)], local_scheduler=True)
    done = _scene(database_url, scene_id)
    assert done["ingest_status"] == IngestStatus.INGESTED, done["status_reason"]
    assert done["ingest_location"].endswith("/{z}/{x}/{y}.png")

    # Reaped back to TOBEINGESTED with every output there: only IngestScene runs, and ends
    # INGESTED through legal moves.
    with db.transaction(database_url) as conn:
        scenes.set_ingest_status(conn, scene_id, IngestStatus.TOBEINGESTED, "reaped")
    build([IngestScene(scene_id=scene_id)], local_scheduler=True)
    assert _scene(database_url, scene_id)["ingest_status"] == IngestStatus.INGESTED


def test_running_ingest_on_a_scene_never_queued_ingests_it(scene_id, database_url):
    assert _scene(database_url, scene_id)["ingest_status"] == IngestStatus.NOTINGESTED
    build([IngestScene(scene_id=scene_id)], local_scheduler=True)
    assert _scene(database_url, scene_id)["ingest_status"] == IngestStatus.INGESTED
