"""Many small files in one upload: the workflow against the same per-file work in one plain
Python loop, in the same run.

The files are 100 x 100 px windows of real imagery (rio-tiler's cog.tif, a Landsat-like
uint16 band), each at a different place, written as plain striped GeoTIFFs like a folder of
drone or NAIP tiles.

Baseline: the bare loop, one process, one file after the other: open, inspect, COG copy
with the workflow's options and GDAL environment, COG validation, both footprints, both
thumbnails, band statistics. No catalog, no task bookkeeping, no Luigi. Against it, the
time of `upload process` (the upload already created), through luigid and in-process.
"""

import logging
import os
import tempfile
from pathlib import Path

import rasterio
from rasterio.windows import Window

from bench.timing import median_seconds, row
from rf_pipelines import config, uploading
from rf_pipelines.imagery import bands, cog, footprint, inspect, thumbnail
from rf_pipelines.targets import files
from rf_pipelines.tasks import ProcessUpload
from rf_pipelines.tasks.runner import build

REAL = Path(__file__).resolve().parents[1] / "tests" / "data" / "geotiff" / "cog.tif"
SIZE = 100


def make_sources(folder, count):
    """``count`` 100 x 100 GeoTIFFs cut from the real COG, each from its own window."""
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(REAL) as real:
        across = (real.width - SIZE) // 7
        down = (real.height - SIZE) // 7
        paths = []
        for i in range(count):
            col, row_ = (i * 13) % across * 7, (i * 29) % down * 7
            window = Window(col, row_, SIZE, SIZE)
            profile = {
                **real.profile,
                "driver": "GTiff",
                "width": SIZE,
                "height": SIZE,
                "transform": real.window_transform(window),
                "tiled": False,
                "compress": None,
            }
            for key in ("blockxsize", "blockysize", "interleave"):
                profile.pop(key, None)
            path = folder / f"tile_{i:05d}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(real.read(window=window))
            paths.append(path)
    return paths


def bare_file(path, out):
    """The per-file work of an upload, and nothing else."""
    with rasterio.open(path) as src:
        inspect.inspect_raster(src, path.name, config.settings().max_upload_pixels)
        cog.write_cog(src, out)  # in cog.GDAL_ENV, with cog.COG_OPTIONS
    cog.check_cog(out, path.name)
    with rasterio.open(out) as dataset:
        footprint.data_footprints(dataset)
        footprint.tile_footprints(dataset)
        for pixels in thumbnail.SIZES.values():
            thumbnail.render(dataset, pixels)
        bands.band_metadata(dataset)


def run(repeat=3, counts=(100, 1000)):
    """Yields benchmark rows: per file count, the workflow through luigid against the bare
    loop, and the workflow with luigi's local scheduler against it.

    Set RF_BENCH_FILE_COUNTS (for example ``100``) to measure fewer counts."""
    wanted = os.environ.get("RF_BENCH_FILE_COUNTS", "")
    counts = tuple(int(c) for c in wanted.split(",") if c.strip()) or counts
    logging.getLogger("luigi-interface").setLevel(logging.WARNING)
    logging.getLogger("luigi").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="rf-bench-many-") as folder:
        folder = Path(folder)
        os.environ["RF_DATA_ROOT"] = str(folder / "data")
        config.settings.cache_clear()
        for count in counts:
            sources = make_sources(folder / f"sources-{count}", count)
            outputs = folder / f"bare-{count}"
            outputs.mkdir()

            def bare(sources=sources, outputs=outputs):
                with files.gdal_env():  # one GDAL environment, as the workflow's steps
                    for path in sources:
                        bare_file(path, outputs / path.name)

            # `upload process` is timed, as the issue measured it; `upload create` (copying
            # the files in, recording them) is done before, untimed.
            created = [
                uploading.create_upload([str(sources[0].parent)], "bench")
                for _ in range(2 * repeat)
            ]

            def workflow(local, created=created):
                upload_id = created.pop()
                result = build([ProcessUpload(upload_id=str(upload_id))], local_scheduler=local)
                assert result.status.name.startswith("SUCCESS"), result.summary_text

            bare_s = median_seconds(bare, repeat)
            yield row(
                f"{count} files of 100x100: upload process through luigid",
                median_seconds(lambda: workflow(None), repeat),
                "bare per-file loop",
                bare_s,
            )
            yield row(
                f"{count} files of 100x100: upload process, local scheduler",
                median_seconds(lambda: workflow(True), repeat),
                "bare per-file loop",
                bare_s,
            )
