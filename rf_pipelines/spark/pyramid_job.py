"""Render a scene's web mercator tile pyramid on Spark.

The driver only lists tiles (coordinates); each partition opens the COG itself, reads the
windows of its tiles, and writes the PNGs to the data root. No pixel passes through the
driver.
"""

import os

from rf_pipelines.imagery import pyramid
from rf_pipelines.targets import files


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
