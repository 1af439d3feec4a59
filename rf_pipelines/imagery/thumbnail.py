"""Thumbnails: PNGs with a per-band percentile stretch, RGB when the bands say so, nodata clear."""

import re
import warnings

import numpy as np
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from rf_pipelines.imagery.footprint import decimated_shape

SIZES = {"SMALL": 256, "LARGE": 1024}
STRETCH_PERCENTILES = (2, 98)
_NAMES = {
    "red": re.compile(r"\b(red|b0?4)\b", re.IGNORECASE),
    "green": re.compile(r"\b(green|b0?3)\b", re.IGNORECASE),
    "blue": re.compile(r"\b(blue|b0?2)\b", re.IGNORECASE),
}


def choose_rgb(dataset):
    """Band indexes to show: red, green, blue by colour interpretation, else by band
    description, else the first three bands; a single band when there are fewer than three.

    Returns:
        tuple of 1 or 3 band indexes (1-based).
    """
    data_bands = [i for i in dataset.indexes if dataset.colorinterp[i - 1] != ColorInterp.alpha]
    by_interp = {dataset.colorinterp[i - 1].name: i for i in data_bands}
    if all(c in by_interp for c in ("red", "green", "blue")):
        return by_interp["red"], by_interp["green"], by_interp["blue"]
    by_name = {}
    for colour, pattern in _NAMES.items():
        for i in data_bands:
            if pattern.search(dataset.descriptions[i - 1] or ""):
                by_name.setdefault(colour, i)
    if len(by_name) == 3:
        return by_name["red"], by_name["green"], by_name["blue"]
    return tuple(data_bands[:3]) if len(data_bands) >= 3 else (data_bands[0],)


def sizes(dataset):
    """(width, height) of each thumbnail size for this raster."""
    return {size: decimated_shape(dataset, pixels)[::-1] for size, pixels in SIZES.items()}


def stretch(band, valid):
    """Scales one band to 0-255 between its 2nd and 98th percentiles of valid pixels."""
    values = band[valid]
    if values.size == 0:
        return np.zeros(band.shape, np.uint8)
    low, high = np.percentile(values, STRETCH_PERCENTILES)
    if high <= low:
        high = low + 1
    scaled = (band.astype(np.float32) - low) * (255.0 / (high - low))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def render(dataset, max_size):
    """A PNG thumbnail no larger than ``max_size`` (nor than the raster) on its longest side.

    Reads at the reduced size, so a COG's overviews do the work.

    Returns:
        (png bytes, width, height).
    """
    rows, cols = decimated_shape(dataset, max_size)
    indexes = choose_rgb(dataset)
    data = dataset.read(
        indexes, out_shape=(len(indexes), rows, cols), resampling=Resampling.nearest
    )
    valid = dataset.dataset_mask(out_shape=(rows, cols)) > 0
    channels = [stretch(band, valid) for band in data]
    if len(channels) == 1:
        channels *= 3
    alpha = np.where(valid, 255, 0).astype(np.uint8)
    with MemoryFile() as memfile, warnings.catch_warnings():
        # A thumbnail is a picture, not a map: no georeferencing is expected.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with memfile.open(driver="PNG", width=cols, height=rows, count=4, dtype="uint8") as png:
            png.write(np.stack([*channels, alpha]))
        return memfile.read(), cols, rows
