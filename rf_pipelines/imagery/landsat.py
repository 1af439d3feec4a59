"""Landsat 8 and 9 scene records from MTL metadata (Collection 1 and 2, text or JSON)."""

import posixpath
import re
from datetime import UTC, datetime

from rf_pipelines.errors import InvalidInput
from rf_pipelines.imagery import geometry

# OLI/TIRS bands: name -> (common name, wavelength range in micrometres, resolution in metres).
OLI_TIRS_BANDS = {
    "B1": ("coastal", (0.43, 0.45), 30),
    "B2": ("blue", (0.45, 0.51), 30),
    "B3": ("green", (0.53, 0.59), 30),
    "B4": ("red", (0.64, 0.67), 30),
    "B5": ("nir08", (0.85, 0.88), 30),
    "B6": ("swir16", (1.57, 1.65), 30),
    "B7": ("swir22", (2.11, 2.29), 30),
    "B8": ("pan", (0.50, 0.68), 15),
    "B9": ("cirrus", (1.36, 1.38), 30),
    "B10": ("lwir11", (10.60, 11.19), 100),
    "B11": ("lwir12", (11.50, 12.51), 100),
}
_BAND_FILE = re.compile(r"^FILE_NAME_BAND_(?:ST_B|)(\d+)$")
_CORNERS = ("UL", "UR", "LR", "LL")


def number(flat, key, label):
    """A numeric field (numbers may be written as strings, as in C2 JSON).

    Raises:
        InvalidInput: missing or not a number; the message names the field.
    """
    if key not in flat:
        raise InvalidInput(f"{label}: missing field {key}")
    try:
        return float(flat[key])
    except (TypeError, ValueError) as err:
        raise InvalidInput(f"{label}: field {key} = {flat[key]!r} is not a number") from err


def text(flat, key, label):
    if key not in flat or flat[key] in ("", None):
        raise InvalidInput(f"{label}: missing field {key}")
    return str(flat[key])


def acquisition_time(flat, label):
    """DATE_ACQUIRED + SCENE_CENTER_TIME as an aware UTC datetime."""
    day = text(flat, "DATE_ACQUIRED", label)
    clock = text(flat, "SCENE_CENTER_TIME", label).rstrip("Z")[:15]  # to microseconds
    try:
        return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=UTC)
    except ValueError as err:
        raise InvalidInput(f"{label}: bad DATE_ACQUIRED/SCENE_CENTER_TIME {day} {clock}") from err


def scene_key(product_id, label):
    """The product id without its processing date and tier (``LC08_L1TP_016037_20170813_01``),
    so a Real-Time scene re-published as Tier 1, or reprocessed, keys the same scene.

    Raises:
        InvalidInput: not a Collection product id (``LXSS_LLLL_PPPRRR_YYYYMMDD_yyyymmdd_CC_TX``).
    """
    parts = product_id.split("_")
    if len(parts) != 7 or not parts[3].isdigit():
        raise InvalidInput(f"{label}: {product_id!r} is not a Landsat collection product id")
    return "_".join(parts[:4] + parts[5:6])


_TIERS = {"RT": "1", "T2": "2", "T1": "3"}


def product_rank(product_id):
    """Orders the products of one scene: collection, then processing date, then tier (a
    Real-Time product is superseded by its Tier 1 or Tier 2 reprocessing); highest newest.
    ``LC08_L2SP_001062_20201031_20201106_02_T2`` ranks ``02/20201106/2``."""
    parts = product_id.split("_")
    if len(parts) != 7:
        return ""
    return f"{parts[5]}/{parts[4]}/{_TIERS.get(parts[6], '0')}"


def scene_record(flat, mtl_url):
    """The scene record of one Landsat product.

    Args:
        flat: the MTL's fields (``mtl.parse``).
        mtl_url: where the MTL was read; band, browse and metadata URLs sit beside it.

    Returns:
        dict: product_id, scene_key (for the scene id), datasource, acquisition_date,
        cloud_cover, sun_azimuth, sun_elevation, footprints {"data", "tile"}, bands,
        metadata_files, thumbnails, scene_metadata.

    Raises:
        InvalidInput: a required field is missing or malformed.
    """
    label = posixpath.basename(mtl_url)
    product_id = text(flat, "LANDSAT_PRODUCT_ID", label)
    spacecraft = text(flat, "SPACECRAFT_ID", label)  # LANDSAT_8, LANDSAT_9
    ring = [
        (
            number(flat, f"CORNER_{c}_LON_PRODUCT", label),
            number(flat, f"CORNER_{c}_LAT_PRODUCT", label),
        )
        for c in _CORNERS
    ]
    footprints = geometry.from_lonlat_ring(ring + ring[:1])
    folder = posixpath.dirname(mtl_url)
    collection = "2" if flat["_root"] == "LANDSAT_METADATA_FILE" else "1"
    browse = "jpeg" if collection == "2" else "jpg"
    return {
        "product_id": product_id,
        "scene_key": scene_key(product_id, label),
        "product_rank": product_rank(product_id),
        "datasource": f"Landsat {spacecraft.rsplit('_', 1)[-1]} C{collection}",
        "acquisition_date": acquisition_time(flat, label),
        "cloud_cover": number(flat, "CLOUD_COVER", label),
        "sun_azimuth": number(flat, "SUN_AZIMUTH", label),
        "sun_elevation": number(flat, "SUN_ELEVATION", label),
        "footprints": {"data": footprints, "tile": footprints},
        "bands": _bands(flat, folder),
        "metadata_files": [mtl_url],
        "thumbnails": {
            "SMALL": f"{folder}/{product_id}_thumb_small.{browse}",
            "LARGE": f"{folder}/{product_id}_thumb_large.{browse}",
        },
        "scene_metadata": {
            "path": int(number(flat, "WRS_PATH", label)),
            "row": int(number(flat, "WRS_ROW", label)),
            "collection": collection,
            "category": flat.get("COLLECTION_CATEGORY"),
            "processing_level": flat.get("PROCESSING_LEVEL") or flat.get("DATA_TYPE"),
            "sensor": flat.get("SENSOR_ID"),
        },
    }


def _bands(flat, folder):
    bands = []
    for key, filename in flat["_band_files"].items():
        match = _BAND_FILE.match(key)
        if not match or f"B{match.group(1)}" not in OLI_TIRS_BANDS:
            continue
        name = f"B{match.group(1)}"
        common, wavelength, resolution = OLI_TIRS_BANDS[name]
        bands.append(
            {
                "name": name,
                "number": int(match.group(1)),
                "common_name": common,
                "wavelength": list(wavelength),
                "resolution": resolution,
                "url": f"{folder}/{filename}",
            }
        )
    return sorted(bands, key=lambda b: b["number"])
