"""Scene records built from metadata: the columns the catalog stores for a scene."""

import math
from datetime import UTC, datetime
from pathlib import PurePosixPath

from rasterio.errors import CRSError

from rf_pipelines.ids import stable_id


def scene_from_description(scene_id, datasource_id, description, owner, written_by):
    """A scene record for a described raster (see ``describe.describe``).

    Returns:
        dict of scene columns for ``catalog.scenes.upsert_scene``.
    """
    footprints = description["tile_footprints"]
    return {
        "id": scene_id,
        "name": PurePosixPath(description["name"]).name,
        "owner": owner,
        "datasource_id": datasource_id,
        "tile_footprint_4326": footprints["4326"],
        "tile_footprint_3857": footprints["3857"],
        "scene_metadata": {
            key: description[key] for key in ("width", "height", "crs", "resolution", "bands")
        },
        "written_by": written_by,
    }


def resolution_meters(crs, resolution, center_lat):
    """Approximate ground resolution in metres of the first axis of ``resolution``."""
    if crs.is_geographic:
        return abs(resolution[0]) * 111_320 * math.cos(math.radians(center_lat))
    try:
        return abs(resolution[0]) * crs.linear_units_factor[1]
    except CRSError:
        return abs(resolution[0])


def upload_scene_records(ids, file, grid, footprints, bands, thumbnails, urls, written_by):
    """The rows that register one processed upload file as a scene.

    Args:
        ids: dict scene_id, image_id, datasource_id, upload_id.
        file: dict filename, owner, size_bytes (of the COG), acquired (datetime or None).
        grid: the COG's grid: crs, width, height, resolution, center_lat, and validation info.
        footprints: {"data": {...}, "tile": {...}} GeoJSON per EPSG code.
        bands: band metadata (``bands.band_metadata``).
        thumbnails: {"SMALL": {"url", "width", "height"}, "LARGE": {...}}.
        urls: cog, stac_item, footprints.
        written_by: ``TaskFamily@vN``.

    Returns:
        (scene, images, thumbnails) for ``catalog.scenes.register_scene``.
    """
    data = footprints["data"] or footprints["tile"]
    scene = {
        "id": ids["scene_id"],
        "name": file["filename"],
        "owner": file["owner"],
        "datasource_id": ids["datasource_id"],
        "visibility": "PRIVATE",
        "acquisition_date": file.get("acquired"),
        "tile_footprint_4326": footprints["tile"]["4326"],
        "tile_footprint_3857": footprints["tile"]["3857"],
        "data_footprint_4326": data["4326"],
        "data_footprint_3857": data["3857"],
        "scene_metadata": {
            "grid": grid,
            "cog_url": urls["cog"],
            "stac_item_url": urls["stac_item"],
        },
        "metadata_files": [urls["stac_item"]],
        "ingest_location": urls["cog"],
        "thumbnail_status": "SUCCESS",
        "boundary_status": "SUCCESS",
        "upload_id": ids["upload_id"],
        "written_by": written_by,
    }
    image = {
        "id": ids["image_id"],
        "scene_id": ids["scene_id"],
        "source_uri": urls["cog"],
        "filename": file["filename"],
        "raw_data_bytes": file["size_bytes"],
        "resolution_meters": grid["resolution_meters"],
        "image_metadata": {k: grid[k] for k in ("width", "height", "crs", "resolution")},
        "written_by": written_by,
        "bands": [
            {
                "id": stable_id("band", ids["image_id"], b["number"]),
                "image_id": ids["image_id"],
                "name": b["name"],
                "number": b["number"],
                "metadata": {k: v for k, v in b.items() if k not in ("name", "number")},
            }
            for b in bands
        ],
    }
    thumbs = [
        {
            "id": stable_id("thumbnail", ids["scene_id"], size),
            "scene_id": ids["scene_id"],
            "size": size,
            "width": t["width"],
            "height": t["height"],
            "url": t["url"],
            "written_by": written_by,
        }
        for size, t in thumbnails.items()
    ]
    return scene, [image], thumbs


def grid_info(dataset):
    """The grid of an open dataset as JSON-ready values."""
    return {
        "crs": dataset.crs.to_string(),
        "wkt": dataset.crs.to_wkt(),
        "width": dataset.width,
        "height": dataset.height,
        "transform": list(dataset.transform)[:6],
        "bounds": list(dataset.bounds),
        "resolution": list(dataset.res),
        # Latitude matters only for degrees, so the centre is never reprojected: the centre of
        # a geostationary view may be in space.
        "resolution_meters": resolution_meters(
            dataset.crs, dataset.res, (dataset.bounds.bottom + dataset.bounds.top) / 2
        ),
    }


def acquisition_time(dataset):
    """The TIFF's DATETIME tag as an aware datetime (UTC assumed), or None."""
    stamp = dataset.tags().get("TIFFTAG_DATETIME", "")
    try:
        return datetime.strptime(stamp.strip(), "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
