"""Small generated inputs for the upload tests, next to the real files in tests/data."""

import struct

import numpy as np
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.transform import Affine, from_origin  # noqa: F401 - used by tests

from tests.conftest import TESTDATA

GEOTIFF = TESTDATA / "geotiff"


def write_tif(path, data, **profile):
    """Writes a GeoTIFF of ``data`` (bands, rows, cols) with the given profile entries."""
    count, height, width = data.shape
    base = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
    }
    with rasterio.open(path, "w", **{**base, **profile}) as dst:
        dst.write(data)
    return path


def gradient(bands=3, size=64, dtype="uint16"):
    rows, cols = np.mgrid[0:size, 0:size]
    return np.stack([(rows + cols * (b + 1)) % 250 + 1 for b in range(bands)]).astype(dtype)


def utm_tif(path, size=64):
    return write_tif(
        path,
        gradient(size=size),
        crs="EPSG:32618",
        transform=from_origin(500000, 2700000, 30, 30),
        nodata=0,
    )


def no_crs_tif(path):
    return write_tif(path, gradient(bands=1))


def gcp_tif(path, size=64):
    """A raster georeferenced only by four ground control points (EPSG:4326)."""
    gcps = [
        GroundControlPoint(row=0, col=0, x=10.0, y=50.0),
        GroundControlPoint(row=0, col=size, x=10.1, y=50.02),
        GroundControlPoint(row=size, col=0, x=9.98, y=49.9),
        GroundControlPoint(row=size, col=size, x=10.08, y=49.92),
    ]
    return write_tif(path, gradient(size=size), gcps=gcps, crs="EPSG:4326")


def rotated_tif(path, size=64):
    transform = from_origin(500000, 2700000, 30, 30) @ Affine.rotation(20)
    return write_tif(path, gradient(size=size), crs="EPSG:32618", transform=transform, nodata=0)


def antimeridian_tif(path):
    """A UTM zone 60 raster whose east edge lies past 180° longitude."""
    return write_tif(
        path,
        gradient(size=100),
        crs="EPSG:32660",
        transform=from_origin(700000, 5000000, 1000, 1000),
        nodata=0,
    )


def complex_tif(path):
    data = np.ones((1, 16, 16), dtype="complex64")
    return write_tif(path, data, crs="EPSG:4326", transform=from_origin(0, 1, 0.01, 0.01))


def huge_header_tif(path, side=1_000_000):
    """A tiny, otherwise valid TIFF whose header claims ``side`` x ``side`` 8-bit pixels."""
    entries = [  # tag, type (3 SHORT, 4 LONG), value
        (256, 4, side),
        (257, 4, side),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 8),
        (277, 3, 1),
        (278, 4, side),
        (279, 4, 1),
    ]
    ifd_offset = 16
    body = struct.pack("<2sHI", b"II", 42, ifd_offset) + b"\0" * 8
    body += struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        packed = struct.pack("<I", value) if kind == 4 else struct.pack("<HH", value, 0)
        body += struct.pack("<HHI", tag, kind, 1) + packed
    body += struct.pack("<I", 0)
    path.write_bytes(body)
    return path
