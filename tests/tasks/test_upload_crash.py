"""A worker killed with SIGKILL in the middle of a COG conversion: nothing partial, rerun heals."""

import os
import signal
import subprocess
import sys
import time

import numpy as np

from rf_pipelines import uploading
from rf_pipelines.catalog import db, rows, uploads
from rf_pipelines.tasks import ConvertToCog, ProcessUpload
from rf_pipelines.tasks.runner import build
from tests import rasters


def _big_tif(path):
    rng = np.random.default_rng(7)
    data = rng.integers(1, 4000, size=(3, 3000, 3000), dtype="uint16")
    return rasters.write_tif(
        path, data, crs="EPSG:32618", transform=rasters.from_origin(500000, 2700000, 10, 10)
    )


def test_sigkill_during_cog_conversion_then_rerun(data_root, database_url, tmp_path):
    if data_root.startswith("s3://"):
        data_root_kind = "s3"
    else:
        data_root_kind = "local"
    upload_id = uploading.create_upload([str(_big_tif(tmp_path / "big.tif"))], "ivy")
    cog = ConvertToCog(upload_id=str(upload_id), filename="big.tif").output()
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rf_pipelines.cli",
            "upload",
            "process",
            str(upload_id),
            "--local-scheduler",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for_conversion(worker, database_url, upload_id)
        os.killpg(worker.pid, signal.SIGKILL)
    finally:
        worker.wait()
    assert worker.returncode == -signal.SIGKILL
    assert not cog.exists(), f"partial COG at {cog.path} ({data_root_kind})"
    with db.connect(database_url) as conn:
        assert uploads.get_upload(conn, upload_id)["upload_status"] == "PROCESSING"

    build([ProcessUpload(upload_id=str(upload_id))], local_scheduler=True)
    with db.connect(database_url) as conn:
        summary = uploads.upload_summary(conn, upload_id)
        assert rows.count(conn, "scenes", upload_id=upload_id) == 1
        assert rows.count(conn, "upload_files", status="PROCESSING") == 0
    assert summary["status"] == "COMPLETE"
    assert cog.exists()


def _wait_for_conversion(worker, database_url, upload_id, timeout=60):
    """Returns once ConvertToCog has started (validation done, file PROCESSING)."""
    deadline = time.monotonic() + timeout
    validated = ConvertToCog(upload_id=str(upload_id), filename="big.tif").requires().output()
    while time.monotonic() < deadline:
        assert worker.poll() is None, worker.stderr.read()
        if validated.exists():
            time.sleep(0.3)  # into GDAL's copy, which takes seconds for this file
            return
        time.sleep(0.05)
    raise AssertionError("the conversion never started")
