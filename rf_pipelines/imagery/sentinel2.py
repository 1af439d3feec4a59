"""Sentinel-2 scene records from the AWS buckets' ``tileInfo.json``."""

import re
from datetime import datetime

from rf_pipelines.errors import InvalidInput
from rf_pipelines.imagery import geometry

# MSI bands: name -> (common name, wavelength range in micrometres, resolution in metres).
MSI_BANDS = {
    "B01": ("coastal", (0.433, 0.453), 60),
    "B02": ("blue", (0.458, 0.523), 10),
    "B03": ("green", (0.543, 0.578), 10),
    "B04": ("red", (0.650, 0.680), 10),
    "B05": ("rededge", (0.698, 0.713), 20),
    "B06": ("rededge", (0.733, 0.748), 20),
    "B07": ("rededge", (0.773, 0.793), 20),
    "B08": ("nir", (0.785, 0.900), 10),
    "B8A": ("nir08", (0.855, 0.875), 20),
    "B09": ("nir09", (0.935, 0.955), 60),
    "B10": ("cirrus", (1.360, 1.390), 60),
    "B11": ("swir16", (1.565, 1.655), 20),
    "B12": ("swir22", (2.100, 2.280), 20),
}


# S2A_MSIL1C_20170729T153601_N0205_R111_T19UDP_20170729T153557: mission, level, datatake
# sensing start, processing baseline, relative orbit, tile, product discriminator.
_PRODUCT_NAME = re.compile(
    r"^(?P<mission>S2[A-D])_(?P<level>MSIL1C|MSIL2A)_(?P<sensing>\d{8}T\d{6})_N(?P<baseline>\d{4})"
    r"_R\d{3}_T(?P<tile>\d{2}[A-Z]{3})_(?P<discriminator>\d{8}T\d{6})$"
)


def names_one_tile(product_name):
    """Whether a product name is of the compact form (since December 2016), whose product
    is one tile."""
    return _PRODUCT_NAME.match(product_name) is not None


def product_identity(product_name, acquired, mgrs_tile):
    """(scene key, rank) of a product.

    The scene key is the product name without what a reprocessing changes (baseline, orbit,
    discriminator): ``S2A_MSIL1C_20170729T153601_T19UDP``, so a product reprocessed under a
    new baseline, at the same tile path or another, updates the same scene. The rank orders
    the products of one scene: baseline, then discriminator (when the product was made); the
    highest is the newest. Names of another form key by tile and acquisition time, rank 0.
    """
    match = _PRODUCT_NAME.match(product_name)
    if match is None:
        return f"S2_{mgrs_tile}_{acquired:%Y%m%dT%H%M%S}", "0000/"
    parts = match.groupdict()
    key = f"{parts['mission']}_{parts['level']}_{parts['sensing']}_T{parts['tile']}"
    return key, f"{parts['baseline']}/{parts['discriminator']}"


def _field(info, key, label):
    if key not in info or info[key] in (None, ""):
        raise InvalidInput(f"{label}: missing field {key}")
    return info[key]


def _geometry(info, key, label):
    """(GeoJSON without its crs, the crs) of a geometry field."""
    geom = _field(info, key, label)
    try:
        crs = geom["crs"]["properties"]["name"]
    except (KeyError, TypeError) as err:
        raise InvalidInput(f"{label}: {key} has no crs") from err
    return {"type": geom.get("type"), "coordinates": geom.get("coordinates")}, crs


def _footprints(info, label):
    """(tile, data) footprints: the data geometry is the tile's when absent; both are
    transformed together when they share a CRS (as they do)."""
    tile, crs = _geometry(info, "tileGeometry", label)
    if not info.get("tileDataGeometry"):
        found = geometry.from_geojson(tile, crs, f"{label} tileGeometry")
        return found, found
    data, data_crs = _geometry(info, "tileDataGeometry", label)
    labels = [f"{label} tileGeometry", f"{label} tileDataGeometry"]
    if data_crs == crs:
        return tuple(geometry.from_geojson_many([tile, data], crs, labels))
    return geometry.from_geojson(tile, crs, labels[0]), geometry.from_geojson(
        data, data_crs, labels[1]
    )


def scene_record(info, tile_info_url, bucket_root):
    """The scene record of one Sentinel-2 tile acquisition.

    The product id is the product's name (``productName``); the scene key and the product's
    rank come from it (``product_identity``), so a reprocessed product updates its scene, and
    the newer of two products wins whatever order they arrive in.

    Args:
        info: the parsed tileInfo.json.
        tile_info_url: where it was read.
        bucket_root: the bucket's root URL, against which the tile path resolves.

    Raises:
        InvalidInput: a missing field, a geometry without CRS, a malformed timestamp.
    """
    label = (
        tile_info_url.rsplit("/", 2)[-2] + "/tileInfo.json"
        if "/" in tile_info_url
        else (tile_info_url)
    )
    path = _field(info, "path", label)
    try:
        acquired = datetime.fromisoformat(_field(info, "timestamp", label).replace("Z", "+00:00"))
    except ValueError as err:
        raise InvalidInput(f"{label}: timestamp {info['timestamp']!r} is not ISO 8601") from err
    tile, data = _footprints(info, label)
    product = _field(info, "productName", label)
    folder = f"{bucket_root.rstrip('/')}/{path}"
    try:
        cloud_cover = float(_field(info, "cloudyPixelPercentage", label))
    except (TypeError, ValueError) as err:
        raise InvalidInput(f"{label}: cloudyPixelPercentage is not a number") from err
    mgrs = f"{info.get('utmZone')}{info.get('latitudeBand')}{info.get('gridSquare')}"
    key, rank = product_identity(product, acquired, mgrs)
    return {
        "product_id": product,
        "scene_key": key,
        "product_rank": rank,
        "datasource": f"Sentinel-2 {'L2A' if 'MSIL2A' in product else 'L1C'}",
        "acquisition_date": acquired,
        "cloud_cover": cloud_cover,
        "sun_azimuth": None,
        "sun_elevation": None,
        "footprints": {"data": data, "tile": tile},
        "bands": [
            {
                "name": name,
                "number": i,
                "common_name": common,
                "wavelength": list(wl),
                "resolution": res,
                "url": f"{folder}/{name}.jp2",
            }
            for i, (name, (common, wl, res)) in enumerate(MSI_BANDS.items(), 1)
        ],
        "metadata_files": [tile_info_url, f"{folder}/metadata.xml"],
        "thumbnails": {"LARGE": f"{folder}/preview.jpg"},
        "scene_metadata": {
            "mgrs_tile": mgrs,
            "tile_path": path,
            "product_name": product,
            "data_coverage": info.get("dataCoveragePercentage"),
            "datastrip": (info.get("datastrip") or {}).get("id"),
        },
    }
