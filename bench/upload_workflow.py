"""The upload workflow on a 4-band uint16 4096 x 4096 GeoTIFF (128 MB) versus a bare GDAL COG
copy of the same file, in the same run; and peak memory, local disk and time for big uploads:
20,000 x 20,000 x 3 from an s3:// prefix to an s3:// data root, and 46,341 x 46,341 x 1
(more than 2^31 pixels) on a local data root.

Baseline: the bare COG copy, the irreducible part of the work: ``rasterio.shutil.copy``
with the workflow's own options (``cog.COG_OPTIONS``: DEFLATE, 512 px blocks, average
overviews) in its own GDAL environment (``cog.GDAL_ENV``: bounded block cache, all cores).
Also against it: a copy with GDAL's defaults (as the baseline was until issue 13: default
overview resampling and block cache) and rio-cogeo's ``cog_translate`` with its deflate
profile, all on the same file.
"""

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.windows import Window

from bench.timing import median_seconds, row
from rf_pipelines import clients, config, uploading
from rf_pipelines.imagery import cog
from rf_pipelines.targets import files
from rf_pipelines.tasks import ProcessUpload
from rf_pipelines.tasks.runner import build

REAL = Path(__file__).resolve().parents[1] / "tests" / "data" / "geotiff" / "cog.tif"


def make_source(path, size=4096, bands=4, chunk=1024):
    """A striped, uncompressed uint16 GeoTIFF built from real imagery (rio-tiler's cog.tif,
    a Landsat-like uint16 band) resampled to ``size`` and varied per band."""
    with rasterio.open(REAL) as real:
        base = real.read(
            1, out_shape=(min(size, 4096), min(size, 4096)), resampling=Resampling.bilinear
        )
        crs, bounds = real.crs, real.bounds
    transform = rasterio.transform.from_bounds(*bounds, size, size)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": bands,
        "dtype": "uint16",
        "crs": crs,
        "transform": transform,
        "nodata": 0,
    }
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, chunk):
            rows = min(chunk, size - row)
            for col in range(0, size, chunk):
                cols = min(chunk, size - col)
                tile = base[row % base.shape[0] :][:rows, col % base.shape[1] :][:, :cols]
                tile = np.pad(
                    tile, ((0, rows - tile.shape[0]), (0, cols - tile.shape[1])), mode="reflect"
                )
                data = np.stack(
                    [(tile.astype(np.uint32) * (b + 2) // 2) % 65535 + 1 for b in range(bands)]
                ).astype("uint16")
                dst.write(data, window=Window(col, row, cols, rows))
    return path


def run(repeat=3):
    """Yields benchmark rows."""
    with tempfile.TemporaryDirectory(prefix="rf-bench-") as folder:
        folder = Path(folder)
        os.environ["RF_DATA_ROOT"] = str(folder / "data")
        config.settings.cache_clear()
        source = make_source(folder / "four_band.tif")

        def bare():
            with rasterio.Env(**cog.GDAL_ENV), rasterio.open(source) as src:
                rasterio.shutil.copy(src, folder / "bare.tif", **cog.COG_OPTIONS)

        def gdal_defaults():
            with rasterio.open(source) as src:
                rasterio.shutil.copy(
                    src,
                    folder / "defaults.tif",
                    driver="COG",
                    compress="DEFLATE",
                    num_threads="ALL_CPUS",
                )

        def rio_cogeo():
            from rio_cogeo.cogeo import cog_translate
            from rio_cogeo.profiles import cog_profiles

            cog_translate(source, folder / "riocogeo.tif", cog_profiles.get("deflate"), quiet=True)

        def workflow():
            upload_id = uploading.create_upload([str(source)], "bench")
            build([ProcessUpload(upload_id=str(upload_id))], local_scheduler=True)

        bare_s = median_seconds(bare, repeat)
        yield row(
            "4096x4096x4 uint16: COG copy with GDAL's defaults",
            median_seconds(gdal_defaults, repeat),
            "bare COG copy",
            bare_s,
        )
        yield row(
            "4096x4096x4 uint16: rio-cogeo cog_translate",
            median_seconds(rio_cogeo, repeat),
            "bare COG copy",
            bare_s,
        )
        _quiet_luigi()
        yield row(
            "4096x4096x4 uint16: whole upload workflow",
            median_seconds(workflow, repeat),
            "bare COG copy",
            bare_s,
        )


def run_memory(size=20_000, bands=3, through_s3=True):
    """Peak memory (max RSS) and peak local disk of a worker processing a ``size`` x ``size``
    x ``bands`` uint16 upload, and its time; with ``through_s3`` the file comes from an
    ``s3://`` prefix and the data root is on S3 (the local disk then holds only what is on
    its way: the scratch folder, RF_SCRATCH_DIR, measured here)."""
    bucket = f"rf-bench-big-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="rf-bench-mem-") as folder:
        folder = Path(folder)
        scratch = folder / "scratch"
        os.environ["RF_SCRATCH_DIR"] = str(scratch)
        os.environ["RF_DATA_ROOT"] = f"s3://{bucket}/data" if through_s3 else str(folder / "data")
        config.settings.cache_clear()
        source = make_source(folder / "big.tif", size=size, bands=bands)
        if through_s3:
            s3 = clients.aws_client("s3", config.settings().s3_endpoint_url)
            s3.create_bucket(Bucket=bucket)
            s3.upload_file(str(source), bucket, "incoming/big.tif")
            os.unlink(source)
            upload_id = uploading.create_upload([f"s3://{bucket}/incoming/"], "bench")
        else:
            upload_id = uploading.create_upload([str(source)], "bench")
            os.unlink(source)  # the upload holds its own copy; keep the disk use down
        started = time.perf_counter()
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
            stderr=subprocess.DEVNULL,
        )
        peak_kb = peak_disk = 0
        while worker.poll() is None:
            peak_kb = max(peak_kb, _high_water_kb(worker.pid))
            peak_disk = max(peak_disk, _folder_bytes(scratch))
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        outcome = "COMPLETE" if worker.returncode == 0 else "FAILED"
        if through_s3:
            files.remove_tree(f"s3://{bucket}/")
            s3.delete_bucket(Bucket=bucket)
    route = "s3 to s3" if through_s3 else "local"
    pixels = size * size
    yield {
        "benchmark": f"{size}x{size}x{bands} uint16 ({pixels:,} px), {route} ({outcome}): "
        f"peak RSS {peak_kb / 1024:,.0f} MB, peak scratch {peak_disk / 1e9:,.2f} GB",
        "seconds": seconds,
        "baseline": "-",
        "baseline_seconds": float("nan"),
    }


def _folder_bytes(folder):
    """Bytes of the files under ``folder`` now (0 when it does not exist)."""
    total = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, name))
    return total


def _high_water_kb(pid):
    """The process's peak resident memory so far (VmHWM). Not ru_maxrss from wait4: Linux
    carries the forking parent's high-water mark across exec into it."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _quiet_luigi():
    import logging

    logging.getLogger("luigi-interface").setLevel(logging.WARNING)
    logging.getLogger("luigi").setLevel(logging.WARNING)
