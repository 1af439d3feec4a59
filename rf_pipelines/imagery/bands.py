"""Band metadata: names, types, nodata, resolution, approximate statistics and histograms."""

import numpy as np
from rasterio.enums import Resampling

from rf_pipelines.imagery.footprint import decimated_shape

# Statistics come from a read of at most this many pixels on the longest side (overviews).
STATS_SIZE = 1024
HISTOGRAM_BINS = 64


def band_name(dataset, index):
    """The band's description, else its colour interpretation, else "band N"."""
    description = dataset.descriptions[index - 1]
    if description:
        return description
    interp = dataset.colorinterp[index - 1].name
    return interp if interp not in ("undefined", "gray", "grey") else f"band {index}"


def band_metadata(dataset, max_size=STATS_SIZE):
    """Per-band metadata with approximate statistics from a decimated read.

    Returns:
        list of dicts: number, name, dtype, nodata, colorinterp, resolution, statistics
        (min, max, mean, stddev, valid_percent), histogram (count, min, max, buckets).
    """
    rows, cols = decimated_shape(dataset, max_size)
    data = dataset.read(
        out_shape=(dataset.count, rows, cols), resampling=Resampling.nearest, masked=True
    )
    result = []
    for index in dataset.indexes:
        band = data[index - 1]
        values = band.compressed().astype(np.float64)
        result.append(
            {
                "number": index,
                "name": band_name(dataset, index),
                "dtype": dataset.dtypes[index - 1],
                "nodata": dataset.nodatavals[index - 1],
                "colorinterp": dataset.colorinterp[index - 1].name,
                "resolution": list(dataset.res),
                "statistics": _statistics(values, band.size),
                "histogram": _histogram(values),
            }
        )
    return result


def _statistics(values, total):
    if values.size == 0:
        return {"valid_percent": 0.0}
    return {
        "minimum": float(values.min()),
        "maximum": float(values.max()),
        "mean": float(values.mean()),
        "stddev": float(values.std()),
        "valid_percent": round(100.0 * values.size / total, 3),
    }


def _histogram(values):
    if values.size == 0:
        return None
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
    return {
        "count": HISTOGRAM_BINS,
        "min": float(edges[0]),
        "max": float(edges[-1]),
        "buckets": counts.tolist(),
    }
