"""The upload and scene commands, and the same workflow through the plain `luigi` command."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from rf_pipelines import config
from rf_pipelines.cli import cli
from tests import rasters
from tests.conftest import REPO

GEOTIFF = rasters.GEOTIFF


def _run(*args):
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_create_process_show_a_good_upload(data_root, database_url):
    code, out = _run(
        "upload", "create", str(GEOTIFF / "byte.tif"), "--owner", "jo", "--project", "Survey"
    )
    assert code == 0, out
    upload_id = out.strip()
    code, out = _run("upload", "process", upload_id)
    assert code == 0, out
    shown = json.loads(out[out.index("{") :])
    assert shown["status"] == "COMPLETE"
    (entry,) = shown["files"]
    assert entry["name"] == "byte.tif" and entry["status"] == "SUCCESS"

    code, out = _run("scene", "show", entry["scene_id"])
    assert code == 0, out
    scene = json.loads(out)
    # Compact by default: each footprint is its type, bbox and vertex count.
    footprint = scene["data_footprint_4326"]
    assert set(footprint) == {"type", "bbox", "vertices"} and footprint["vertices"] >= 4
    west, south, east, north = footprint["bbox"]
    assert west < east and south < north
    code, full = _run("scene", "show", entry["scene_id"], "--full")
    whole = json.loads(full)["data_footprint_4326"]
    assert whole["type"] == footprint["type"] and "coordinates" in whole
    assert len(full.splitlines()) > len(out.splitlines())
    assert scene["ingest_location"] == entry["outputs"]["cog"]
    assert scene["scene_metadata"]["stac_item_url"] == entry["outputs"]["stac_item"]
    assert len(scene["images"][0]["bands"]) == 1 and len(scene["thumbnails"]) == 2

    code, out = _run("upload", "show", upload_id)
    assert code == 0 and json.loads(out)["status"] == "COMPLETE"


def test_process_exits_non_zero_unless_complete(data_root, database_url, tmp_path):
    bad = tmp_path / "empty.tif"
    bad.write_bytes(b"")
    code, out = _run("upload", "create", str(bad))
    upload_id = out.strip()
    code, out = _run("upload", "process", upload_id, "--local-scheduler")
    assert code == 3
    assert '"status": "FAILED"' in out and "empty.tif: the file is empty (0 bytes)" in out


def test_bad_ids_get_one_line_errors(data_root, database_url):
    code, out = _run("upload", "process", "not-a-uuid")
    assert (code, out.strip()) == (2, "Error: upload id 'not-a-uuid' is not a UUID")
    code, out = _run("upload", "show", "9d3c5c0e-7f59-4f0e-9a3e-0b2ffc1b6a11")
    assert code == 2 and "does not exist" in out
    code, out = _run("scene", "show", "../../etc")
    assert (code, out.strip()) == (2, "Error: scene id '../../etc' is not a UUID")


def test_plain_luigi_command_runs_process_upload(data_root, database_url, tmp_path):
    code, out = _run("upload", "create", str(GEOTIFF / "byte.tif"))
    upload_id = out.strip()
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(REPO / "luigi.cfg")}
    luigi = str(Path(sys.executable).parent / "luigi")
    done = subprocess.run(
        [
            luigi,
            "--module",
            "rf_pipelines.tasks",
            "ProcessUpload",
            "--upload-id",
            upload_id,
            # The suite's own luigid, not the one luigi.cfg names (a user's may run there).
            "--scheduler-port",
            str(config.local_ports()["luigid"]),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    code, out = _run("upload", "show", upload_id)
    assert json.loads(out)["status"] == "COMPLETE"

    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(GEOTIFF / "odd" / "corrupt.tif", bad / "corrupt.tif")
    code, out = _run("upload", "create", str(bad / "corrupt.tif"))
    failed = subprocess.run(
        [
            luigi,
            "--module",
            "rf_pipelines.tasks",
            "ProcessUpload",
            "--upload-id",
            out.strip(),
            "--local-scheduler",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert failed.returncode == 30  # [retcode] task_failed in luigi.cfg
