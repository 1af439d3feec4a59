"""The demo pipeline through the real luigid: outputs, rerun skipping, task versions."""

import json
import urllib.parse
import urllib.request

import pytest

from rf_pipelines.catalog import db, rows, scenes
from rf_pipelines.errors import BuildFailed
from rf_pipelines.services import HISTORY_DATABASE
from rf_pipelines.targets import existing, target_for
from rf_pipelines.tasks import DescribeRaster, RegisterRaster
from rf_pipelines.tasks.runner import build, scheduler_url
from tests.conftest import REPO

BYTE_TIF = str(REPO / "tests" / "data" / "geotiff" / "byte.tif")


def _luigid_done_ids():
    query = urllib.parse.quote(json.dumps({"status": "DONE"}))
    with urllib.request.urlopen(f"{scheduler_url()}/api/task_list?data={query}") as resp:
        return set(json.load(resp)["response"])


def _history_events(admin_url, task_id):
    url = admin_url.rsplit("/", 1)[0] + "/" + HISTORY_DATABASE
    with db.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT e.event_name FROM tasks t JOIN task_events e ON e.task_id = t.id "
            "WHERE t.task_id = %s ORDER BY e.ts",
            (task_id,),
        )
        return [row[0] for row in cur.fetchall()]


def test_pipeline_writes_file_and_row_then_rerun_does_nothing(data_root, database_url, admin_url):
    task = RegisterRaster(path=BYTE_TIF)
    first = build([task], local_scheduler=False)
    assert "2 ran successfully" in first.summary_text
    assert task.task_id in _luigid_done_ids()
    assert _history_events(admin_url, task.task_id)[-1] == "DONE"

    description_url = DescribeRaster(path=BYTE_TIF).output_url("description.json")
    assert description_url.startswith(data_root) and "/DescribeRaster/v1/" in description_url
    with target_for(description_url).open("r") as src:
        description = json.loads(src.read())
    assert description["written_by"] == "DescribeRaster@v1"
    assert description["crs"] == "EPSG:26711"
    with db.connect(database_url) as conn:
        scene = scenes.get_scene(conn, task.scene_id())
    assert scene["written_by"] == "RegisterRaster@v1"
    assert scene["scene_metadata"]["width"] == 20
    lon, lat = scene["tile_footprint_4326"]["coordinates"][0][0]
    assert -118 < lon < -117 and 33 < lat < 34

    second = build([RegisterRaster(path=BYTE_TIF)], local_scheduler=False)
    assert "Did not run any tasks" in second.summary_text
    with db.connect(database_url) as conn:
        assert scenes.get_scene(conn, task.scene_id())["modified_at"] == scene["modified_at"]


def test_version_bump_recomputes_and_keeps_old_outputs(data_root, database_url, monkeypatch):
    build([RegisterRaster(path=BYTE_TIF)], local_scheduler=True)
    old_url = DescribeRaster(path=BYTE_TIF).output_url("description.json")

    monkeypatch.setattr(DescribeRaster, "version", 2)
    monkeypatch.setattr(RegisterRaster, "version", 2)
    result = build([RegisterRaster(path=BYTE_TIF)], local_scheduler=True)
    assert "2 ran successfully" in result.summary_text
    new_url = DescribeRaster(path=BYTE_TIF).output_url("description.json")
    assert "/DescribeRaster/v2/" in new_url
    assert existing([old_url, new_url]) == {old_url, new_url}
    with db.connect(database_url) as conn:
        scene = scenes.get_scene(conn, RegisterRaster(path=BYTE_TIF).scene_id())
        assert scene["written_by"] == "RegisterRaster@v2"
        assert rows.count(conn, "scenes", id=scene["id"]) == 1


def test_failing_step_raises_with_summary_and_registers_nothing(data_root, database_url, tmp_path):
    bogus = tmp_path / "not-a-raster.tif"
    bogus.write_text("plain text, not a GeoTIFF")
    task = RegisterRaster(path=str(bogus))
    with pytest.raises(BuildFailed) as err:
        build([task], local_scheduler=True)
    assert err.value.exit_code == 3
    assert "DescribeRaster" in str(err.value) and "failed" in str(err.value)
    with db.connect(database_url) as conn:
        assert rows.count(conn, "scenes", id=task.scene_id()) == 0
