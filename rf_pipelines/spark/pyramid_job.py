"""Render a scene's web mercator tile pyramid on Spark.

The driver only lists tiles (coordinates); each partition opens the COG itself, reads the
windows of its tiles, and writes the PNGs to the data root. No pixel passes through the
driver.
"""

import contextlib
import os
import threading
import time

from rf_pipelines.imagery import pyramid
from rf_pipelines.targets import files


class NoExecutors(RuntimeError):
    """The application had no executor for too long: the cluster has no free cores or
    memory for it, or went away under it."""


def executor_count(sc):
    """Executors the application holds now (the driver, which the count includes, aside)."""
    return sc._jsc.sc().getExecutorMemoryStatus().size() - 1


@contextlib.contextmanager
def executors_watched(sc, master, wait_s, poll_s=1.0):
    """Runs the block; once the application has had no executor for ``wait_s`` seconds, its
    jobs are cancelled and the block's failure is ``NoExecutors``. Spark itself would wait
    for resources, or for a lost master to come back, for ever."""
    state = {"since": time.monotonic(), "lost": False}
    stop = threading.Event()

    def watch():
        while not stop.wait(poll_s):
            if executor_count(sc) > 0:
                state["since"] = time.monotonic()
            elif time.monotonic() - state["since"] > wait_s:
                state["lost"] = True
                sc.cancelAllJobs()
                return

    watcher = threading.Thread(target=watch, name="executors-watch", daemon=True)
    watcher.start()
    try:
        yield
    except Exception as err:
        if state["lost"]:
            raise NoExecutors(
                f"no executor of {master} for {wait_s:g} s (no free cores or memory for this "
                "application, or the cluster went away); see the master's web UI"
            ) from err
        raise
    finally:
        stop.set()


def render_pyramid(sc, cog_url, out_url, plan, partitions=None):
    """Renders every tile of ``plan`` from ``cog_url`` under ``out_url``.

    Returns:
        dict: tiles (listed), written, empty (no data, not written), executor_code (where
        the executors imported this package from: the archive shipped with the job, on a
        cluster).
    """
    coordinates = pyramid.tiles(plan)
    # Small partitions keep both cores busy to the end; contiguous tiles share COG blocks.
    slices = partitions or max(1, min(len(coordinates), sc.defaultParallelism * 12))
    counts = (
        sc.parallelize(coordinates, slices)
        .mapPartitions(lambda part: [render_partition(cog_url, out_url, plan, part)])
        .collect()
    )
    return {
        "tiles": len(coordinates),
        "written": sum(c[0] for c in counts),
        "empty": sum(c[1] for c in counts),
        "executor_code": sorted({c[2] for c in counts}),
    }


def render_partition(cog_url, out_url, plan, coordinates):
    """Renders and writes the tiles of one partition; returns (written, empty, the folder
    this package was imported from)."""
    from rio_tiler.io import Reader

    import rf_pipelines

    written = empty = 0
    with files.gdal_env(cog_url), Reader(cog_url) as reader:
        for z, x, y in coordinates:
            png = pyramid.render_tile(reader, z, x, y, plan)
            if png is None:
                empty += 1
                continue
            files.write_bytes(files.join(out_url, pyramid.tile_key(z, x, y)), png)
            written += 1
    return written, empty, os.path.dirname(rf_pipelines.__file__)
