"""Two workers against one luigid, one per role: each task runs once, on a worker whose role
allows it (the Spark job on the spark worker, the rest on the light worker)."""

import os
import re
import subprocess
import sys

from rf_pipelines import uploading
from rf_pipelines.catalog import db, scenes, uploads
from rf_pipelines.routing import parse_roles, role_of
from rf_pipelines.tasks import IngestScene, ProcessUpload, RenderTiles, SceneCog
from rf_pipelines.tasks.runner import build
from tests import rasters

RAN = re.compile(r"running\s+(\w+)\(")


def test_each_task_runs_once_on_a_worker_of_its_role(tmp_path, database_url, monkeypatch):
    monkeypatch.setenv("RF_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("RF_DATABASE_URL", database_url)
    from rf_pipelines import config

    config.settings.cache_clear()
    upload_id = uploading.create_upload([str(rasters.GEOTIFF / "RGB.byte.tif")], "routing")
    build([ProcessUpload(upload_id=str(upload_id))])
    with db.transaction(database_url) as conn:
        scene_id = str(uploads.upload_summary(conn, upload_id)["files"][0]["scene_id"])
        scenes.set_ingest_status(conn, scene_id, "TOBEINGESTED")

    argv = [sys.executable, "-m", "rf_pipelines.cli", "run", "IngestScene", "--scene-id", scene_id]
    workers = {
        role: subprocess.Popen(
            [*argv, "--role", role, "--verbose"],  # luigi's log says what ran where
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for role in ("spark", "light")
    }
    logs = {role: proc.communicate(timeout=600)[0] for role, proc in workers.items()}
    for role, proc in workers.items():
        assert proc.returncode == 0, logs[role][-3000:]
    ran = {role: RAN.findall(text) for role, text in logs.items()}
    assert ran["spark"] == ["RenderTiles"]
    assert sorted(ran["light"]) == ["IngestScene", "SceneCog"]
    with db.connect(database_url) as conn:
        assert scenes.get_scene(conn, scene_id)["ingest_status"] == "INGESTED"


def test_roles_of_tasks_and_role_names(luigi_config):
    scene = "6f1b5a3e-8a4c-4e8e-9a36-3a1b7c0f0c11"
    assert role_of(RenderTiles(scene_id=scene)) == "spark"
    assert role_of(SceneCog(scene_id=scene)) == "light"
    assert role_of(IngestScene(scene_id=scene)) == "light"
    luigi_config("rf_roles", "SceneCog", "big-memory")
    assert role_of(SceneCog(scene_id=scene)) == "big-memory"
    assert parse_roles("spark, big-memory") == {"spark", "big-memory"}
    assert parse_roles("all") is None
    import pytest

    from rf_pipelines.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown \\['gpu'\\]"):
        parse_roles("gpu")
