"""Scene ingest without Spark or luigi: the bands of a scene stacked into one COG, and the web
mercator tiles of that COG (256 px PNG, transparent outside the data).

rio-tiler does the per-tile work (warp to EPSG:3857, mask, rescale, PNG); this module chooses
the zooms, the tiles, and one stretch for the whole scene, so that neighbouring tiles match.
"""

import contextlib
import math
import os

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.vrt import WarpedVRT
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from shapely.geometry import shape

from rf_pipelines.errors import InvalidInput
from rf_pipelines.imagery import cog, footprint, thumbnail
from rf_pipelines.imagery.geometry import MERCATOR_LIMIT

TILE_SIZE = 256
STRIP_ROWS = 1024  # rows warped at a time when stacking: bounded memory for any size


def stack_bands(band_sources, out_path, label):
    """Writes the bands as one multi-band COG: every band warped to the grid of the finest
    band (its CRS and resolution, the union of the bands' bounds) and stacked in order.

    Args:
        band_sources: list of (url, band index in that file, band name).
        out_path: local path of the COG.
        label: names the scene in errors.

    Raises:
        InvalidInput: no bands, or a band file that cannot be read.
    """
    if not band_sources:
        raise InvalidInput(f"{label}: the scene has no bands to ingest")
    with contextlib.ExitStack() as stack:
        try:
            opened = [stack.enter_context(rasterio.open(url)) for url, _, _ in band_sources]
        except rasterio.errors.RasterioIOError as err:
            raise InvalidInput(f"{label}: a band cannot be read ({err})") from err
        finest = min(opened, key=lambda d: abs(d.res[0]))
        bounds = _union_bounds(opened, finest.crs)
        transform = from_origin(bounds[0], bounds[3], abs(finest.res[0]), abs(finest.res[1]))
        width, height = _size(bounds, finest.res)
        dtypes = [d.dtypes[i - 1] for d, (_, i, _) in zip(opened, band_sources, strict=True)]
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": len(band_sources),
            "dtype": np.result_type(*dtypes).name,
            "crs": finest.crs,
            "transform": transform,
            "nodata": finest.nodata if finest.nodata is not None else 0,
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "compress": "deflate",
            "BIGTIFF": "IF_SAFER",
        }
        stacked = out_path + ".stack.tif"
        with rasterio.open(stacked, "w", **profile) as out:
            for band, (dataset, (_, index, name)) in enumerate(
                zip(opened, band_sources, strict=True), 1
            ):
                with WarpedVRT(
                    dataset,
                    crs=finest.crs,
                    transform=transform,
                    width=width,
                    height=height,
                    resampling=Resampling.bilinear,
                    src_nodata=dataset.nodata,
                    nodata=profile["nodata"],
                ) as vrt:
                    for row in range(0, height, STRIP_ROWS):
                        rows = min(STRIP_ROWS, height - row)
                        window = rasterio.windows.Window(0, row, width, rows)
                        out.write(vrt.read(index, window=window), band, window=window)
                out.set_band_description(band, name)
        with rasterio.open(stacked) as src:
            cog.write_cog(src, out_path)
    os.remove(stacked)


def _union_bounds(datasets, crs):
    from rasterio.warp import transform_bounds

    boxes = [transform_bounds(d.crs, crs, *d.bounds) for d in datasets]
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _size(bounds, res):
    return (
        max(1, round((bounds[2] - bounds[0]) / abs(res[0]))),
        max(1, round((bounds[3] - bounds[1]) / abs(res[1]))),
    )


def plan(cog_path):
    """What to render: zooms, RGB band indexes and one stretch for the scene.

    Returns:
        dict: minzoom, maxzoom (from the COG's resolution: the max zoom is the first whose
        pixels are at least as fine, the min zoom the one where the scene fits a tile),
        indexes, ranges (2nd-98th percentile of each shown band, from an overview), bounds
        (EPSG:4326).
    """
    with rasterio.open(cog_path) as dataset, Reader(cog_path) as reader:
        indexes = thumbnail.choose_rgb(dataset)
        maxzoom = reader.maxzoom
        span = max(dataset.width, dataset.height) / TILE_SIZE
        minzoom = max(0, maxzoom - math.ceil(math.log2(max(span, 1))))
        preview = reader.preview(indexes=indexes, max_size=1024)
        valid = preview.mask > 0
        ranges = []
        for band in preview.data:
            values = band[valid]
            if values.size == 0:
                ranges.append((0.0, 1.0))
                continue
            low, high = np.percentile(values, thumbnail.STRETCH_PERCENTILES)
            ranges.append((float(low), float(high if high > low else low + 1)))
        return {
            "minzoom": minzoom,
            "maxzoom": maxzoom,
            "indexes": list(indexes),
            "ranges": ranges,
            "bounds": _mercator_bounds(dataset),
        }


def _mercator_bounds(dataset):
    """The scene's tile footprint's bounds in longitude/latitude within Web Mercator's
    ±85.05°: only the part on the Earth of a view that reaches into space; west > east for a
    footprint cut at ±180°.

    Raises:
        InvalidInput: the scene lies wholly beyond ±85.05° (at a pole): no tile shows it.
    """
    outline = shape(footprint.tile_footprints(dataset)["4326"])
    west, south, east, north = outline.bounds
    south, north = max(south, -MERCATOR_LIMIT), min(north, MERCATOR_LIMIT)
    parts = [part.bounds for part in getattr(outline, "geoms", [outline])]
    eastern = [b for b in parts if b[2] >= 180 and b[0] > -180]  # ends at +180
    western = [b for b in parts if b[0] <= -180 and b[2] < 180]  # starts at -180
    if eastern and western and len(eastern) + len(western) == len(parts):
        # Cut at ±180°: west > east, which the tile grid reads as crossing the antimeridian
        # (not every longitude of the world).
        west, east = min(b[0] for b in eastern), max(b[2] for b in western)
    elif east > 180 or west < -180:
        # Longitudes past ±180° (a geographic grid run over the antimeridian): wrapped.
        west, east = (west + 540) % 360 - 180, (east + 540) % 360 - 180
    if south >= north:
        raise InvalidInput(
            f"{dataset.name}: the scene lies beyond Web Mercator's ±{MERCATOR_LIMIT:.2f}° "
            "latitude: no web map tile shows it"
        )
    return [west, south, east, north]


def tiles(plan_):
    """Every (z, x, y) tile over the scene's bounds, zoom by zoom."""
    from morecantile import tms as tile_matrix_sets

    grid = tile_matrix_sets.get("WebMercatorQuad")
    west, south, east, north = plan_["bounds"]
    zooms = range(plan_["minzoom"], plan_["maxzoom"] + 1)
    return [(t.z, t.x, t.y) for t in grid.tiles(west, south, east, north, list(zooms))]


def render_tile(reader, z, x, y, plan_):
    """The tile as PNG bytes (RGBA, transparent outside the data), or None when it holds no
    data at all."""
    try:
        image = reader.tile(x, y, z, indexes=plan_["indexes"], tilesize=TILE_SIZE)
    except TileOutsideBounds:
        return None
    if not image.mask.any():
        return None
    image.rescale(in_range=[tuple(r) for r in plan_["ranges"]])
    return image.render(img_format="PNG", add_mask=True)


def tile_key(z, x, y):
    """The tile's path under the pyramid's folder."""
    return f"{z}/{x}/{y}.png"
