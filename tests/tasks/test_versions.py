"""Bumping a step's version redoes that step and everything downstream of it on the next run,
also for work whose completeness is a catalog status (an upload COMPLETE, a scene INGESTED);
steps upstream of the bump are not redone. ProcessUpload.requires() writes nothing."""

import datetime
import json

import pytest
from click.testing import CliRunner
from luigi.execution_summary import _summary_dict

from rf_pipelines import config, uploading
from rf_pipelines.catalog import db, scenes, uploads
from rf_pipelines.cli import cli
from rf_pipelines.tasks import IngestScene, ProcessUpload
from rf_pipelines.tasks.imports import ImportBatch, ImportDay
from rf_pipelines.tasks.ingest import RenderTiles
from rf_pipelines.tasks.runner import build
from rf_pipelines.tasks.uploads import (
    ConvertToCog,
    DescribeBands,
    MakeFootprints,
    MakeThumbnails,
    RegisterUploadScene,
    ValidateUploadFile,
    WriteStacItem,
)
from tests import mirror, rasters
from tests.tasks.test_imports import DAY

UPLOAD_STEPS = {
    "ValidateUploadFile",
    "ConvertToCog",
    "MakeFootprints",
    "MakeThumbnails",
    "DescribeBands",
    "WriteStacItem",
    "RegisterUploadScene",
    "UploadBatch",
    "ProcessUpload",
}
STEP_CLASSES = (
    ValidateUploadFile,
    ConvertToCog,
    MakeFootprints,
    MakeThumbnails,
    DescribeBands,
    WriteStacItem,
    RegisterUploadScene,
)
_RECORD = []  # the file the steps of an upload's files write their family to as they run


@pytest.fixture()
def local_root(tmp_path, database_url, settings_env):
    settings_env.setenv("RF_DATA_ROOT", str(tmp_path / "data"))
    settings_env.setenv("RF_DATABASE_URL", database_url)
    config.settings.cache_clear()
    return database_url


@pytest.fixture(autouse=True)
def _steps_recorded(tmp_path, monkeypatch):
    """Each step of an upload's file writes its family to a file as it runs (in whichever
    process of its batch's pool)."""
    record = tmp_path / "steps.txt"
    for cls in STEP_CLASSES:
        monkeypatch.setattr(cls, "work", _recorded(cls.work, record))
    _RECORD[:] = [record]
    yield
    _RECORD.clear()


def _recorded(work, record):
    def run_and_record(self):
        with open(record, "a") as out:
            out.write(self.task_family + "\n")
        return work(self)

    return run_and_record


def _ran(tasks):
    """The families of the tasks that ran (not those found complete) in one build, and of
    the steps of an upload's files its batches ran."""
    result = build(tasks, local_scheduler=True)
    ran = {task.task_family for task in _summary_dict(result.worker)["completed"]}
    if _RECORD and _RECORD[0].exists():
        ran |= set(_RECORD[0].read_text().split())
        _RECORD[0].unlink()
    return ran


def _upload(database_url):
    upload_id = str(uploading.create_upload([str(rasters.GEOTIFF / "RGB.byte.tif")], "versions"))
    assert _ran([ProcessUpload(upload_id=upload_id)]) == UPLOAD_STEPS
    return upload_id


def _summary(database_url, upload_id):
    with db.connect(database_url) as conn:
        return uploads.upload_summary(conn, upload_id)


def test_a_bumped_step_redoes_a_complete_upload_from_that_step_on(
    data_root, database_url, monkeypatch
):
    upload_id = _upload(database_url)
    before = _summary(database_url, upload_id)
    assert _ran([ProcessUpload(upload_id=upload_id)]) == set()  # nothing to do

    monkeypatch.setattr(MakeFootprints, "version", 2)
    ran = _ran([ProcessUpload(upload_id=upload_id)])

    assert ran == {
        "MakeFootprints",
        "WriteStacItem",
        "RegisterUploadScene",
        "UploadBatch",
        "ProcessUpload",
    }
    after = _summary(database_url, upload_id)
    assert after["status"] == "COMPLETE" and "MakeFootprints@v2" in after["processed_by"]
    assert "MakeFootprints@v1" in before["processed_by"]
    (file_before,), (file_after,) = before["files"], after["files"]
    assert "/MakeFootprints/v1-" in file_before["outputs"]["footprints"]
    assert "/MakeFootprints/v2-" in file_after["outputs"]["footprints"]
    # The item reads the footprints, so it moved too; the COG, upstream, did not.
    assert file_after["outputs"]["stac_item"] != file_before["outputs"]["stac_item"]
    assert file_after["outputs"]["cog"] == file_before["outputs"]["cog"]
    assert file_after["scene_id"] == file_before["scene_id"]
    assert _ran([ProcessUpload(upload_id=upload_id)]) == set()


def test_bumping_the_upload_task_itself_settles_the_upload_again(local_root, monkeypatch):
    database_url = local_root
    upload_id = _upload(database_url)
    monkeypatch.setattr(ProcessUpload, "version", 3)
    assert _ran([ProcessUpload(upload_id=upload_id)]) == {"ProcessUpload"}
    assert "ProcessUpload@v3" in _summary(database_url, upload_id)["processed_by"]

    # An upload finished before versions were recorded is settled again once, then is done.
    with db.transaction(database_url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE uploads SET processed_by = NULL WHERE id = %s", (upload_id,))
    assert _ran([ProcessUpload(upload_id=upload_id)]) == {"ProcessUpload"}
    assert _ran([ProcessUpload(upload_id=upload_id)]) == set()


def test_a_bumped_ingest_step_renders_an_ingested_scene_again(local_root, monkeypatch):
    database_url = local_root
    upload_id = _upload(database_url)
    scene_id = _summary(database_url, upload_id)["files"][0]["scene_id"]
    assert _ran([IngestScene(scene_id=scene_id)]) == {"SceneCog", "RenderTiles", "IngestScene"}
    with db.connect(database_url) as conn:
        first = scenes.get_scene(conn, scene_id)

    monkeypatch.setattr(RenderTiles, "version", 2)
    assert _ran([IngestScene(scene_id=scene_id)]) == {"RenderTiles", "IngestScene"}

    with db.connect(database_url) as conn:
        scene = scenes.get_scene(conn, scene_id)
    assert scene["ingest_status"] == "INGESTED" and "RenderTiles@v2" in scene["ingested_by"]
    assert "/RenderTiles/v1-" in first["ingest_location"]
    assert "/RenderTiles/v2-" in scene["ingest_location"]
    assert _ran([IngestScene(scene_id=scene_id)]) == set()


def test_a_bumped_upload_step_takes_its_scene_back_for_a_new_ingest(local_root, monkeypatch):
    database_url = local_root
    upload_id = _upload(database_url)
    scene_id = _summary(database_url, upload_id)["files"][0]["scene_id"]
    assert _ran([IngestScene(scene_id=scene_id)]) == {"SceneCog", "RenderTiles", "IngestScene"}
    with db.connect(database_url) as conn:
        old_tiles = scenes.get_scene(conn, scene_id)["ingest_location"]

    monkeypatch.setattr(ConvertToCog, "version", 2)  # the scene's file is made anew
    assert "ConvertToCog" in _ran([ProcessUpload(upload_id=upload_id)])
    with db.connect(database_url) as conn:
        scene = scenes.get_scene(conn, scene_id)
    assert (
        scene["ingest_status"] == "NOTINGESTED" and "/ConvertToCog/v2-" in scene["ingest_location"]
    )

    # Its scene COG and tiles are made from the new file, at new paths.
    assert _ran([IngestScene(scene_id=scene_id)]) == {"SceneCog", "RenderTiles", "IngestScene"}
    with db.connect(database_url) as conn:
        scene = scenes.get_scene(conn, scene_id)
    assert scene["ingest_status"] == "INGESTED" and scene["ingest_location"] != old_tiles


def test_a_bumped_import_step_imports_the_day_again(s2_bucket, database_url, monkeypatch):
    mirror.put_day(s2_bucket, DAY, ["DP", "DQ", "EP"])
    params = {"source": "sentinel2", "day": DAY, "run_day": DAY}
    assert "ImportBatch" in _ran([ImportDay(**params)])
    assert _writers(database_url) == {"ImportBatch@v1": 3}

    monkeypatch.setattr(ImportBatch, "version", 2)
    # The next check of the day (a look-back) reads again every scene v1 wrote.
    later = {**params, "run_day": DAY + datetime.timedelta(days=1)}
    assert {"DiscoverDay", "ImportBatch", "ImportDay"} <= _ran([ImportDay(**later)])
    assert _writers(database_url) == {"ImportBatch@v2": 3}


def test_scenes_the_listener_imported_are_not_read_again_by_the_nightly_check(
    s2_bucket, database_url
):
    from rf_pipelines import listening

    mirror.put_day(s2_bucket, DAY, ["DP", "DQ"])
    for path in ("DP", "DQ"):
        url = f"{s2_bucket}/{mirror.tile_path(DAY, path)}/tileInfo.json"
        source, entry = listening.parse(
            json.dumps(
                {
                    "Records": [
                        {
                            "s3": {
                                "bucket": {"name": url[5:].split("/", 1)[0]},
                                "object": {"key": url[5:].split("/", 1)[1]},
                            }
                        }
                    ]
                }
            )
        )
        (record,) = source.read_batch([entry])
        record["scene_metadata"]["import_source"] = "sentinel2"
        listening._store([record])
    assert _writers(database_url) == {listening.WRITTEN_BY: 2}
    params = {"source": "sentinel2", "day": DAY, "run_day": DAY}
    build([ImportDay(**params)], local_scheduler=True)
    assert _writers(database_url) == {listening.WRITTEN_BY: 2}  # known: not read again


def _writers(database_url):
    with db.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT written_by, count(*) FROM scenes WHERE owner = 'rf_pipelines' GROUP BY 1"
        )
        return dict(cur.fetchall())


def test_requires_writes_nothing_and_a_bad_upload_is_bad_input(local_root):
    database_url = local_root
    upload_id = str(uploading.create_upload([str(rasters.GEOTIFF / "byte.tif")], "versions"))
    with db.transaction(database_url) as conn:
        uploads.add_file(conn, upload_id, "../../escaped.tif", "forged", 1)
    before = _summary(database_url, upload_id)
    required = ProcessUpload(upload_id=upload_id).requires()
    assert [(t.task_family, t.batch) for t in required] == [("UploadBatch", 0)]
    assert _summary(database_url, upload_id) == before

    with db.transaction(database_url) as conn:
        uploads.set_upload_status(conn, upload_id, "ABORTED")
    result = CliRunner().invoke(
        cli, ["run", "ProcessUpload", "--upload-id", upload_id, "--local-scheduler"]
    )
    assert result.exit_code == 2, result.output
    assert f"upload {upload_id} is ABORTED" in result.output
