"""Sentinel-2 scene records from the AWS buckets' ``tileInfo.json``."""

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


def _field(info, key, label):
    if key not in info or info[key] in (None, ""):
        raise InvalidInput(f"{label}: missing field {key}")
    return info[key]


def _footprints(info, key, label):
    geom = _field(info, key, label)
    try:
        crs = geom["crs"]["properties"]["name"]
    except (KeyError, TypeError) as err:
        raise InvalidInput(f"{label}: {key} has no crs") from err
    plain = {"type": geom.get("type"), "coordinates": geom.get("coordinates")}
    return geometry.from_geojson(plain, crs, f"{label} {key}")


def scene_record(info, tile_info_url, bucket_root):
    """The scene record of one Sentinel-2 tile acquisition.

    The product id is the tile path (``tiles/{zone}/{band}/{square}/{Y}/{M}/{D}/{n}``), so a
    reprocessed product of the same tile and day updates the same scene.

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
    tile = _footprints(info, "tileGeometry", label)
    data = _footprints(info, "tileDataGeometry", label) if info.get("tileDataGeometry") else tile
    product = _field(info, "productName", label)
    folder = f"{bucket_root.rstrip('/')}/{path}"
    try:
        cloud_cover = float(_field(info, "cloudyPixelPercentage", label))
    except (TypeError, ValueError) as err:
        raise InvalidInput(f"{label}: cloudyPixelPercentage is not a number") from err
    return {
        "product_id": path,
        "scene_key": path,
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
            "mgrs_tile": f"{info.get('utmZone')}{info.get('latitudeBand')}{info.get('gridSquare')}",
            "product_name": product,
            "data_coverage": info.get("dataCoveragePercentage"),
            "datastrip": (info.get("datastrip") or {}).get("id"),
        },
    }
