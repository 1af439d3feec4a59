"""STAC items (pystac) for processed rasters, with the projection, raster and eo extensions."""

import pystac
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import (
    DataType,
    Histogram,
    RasterBand,
    RasterExtension,
    Statistics,
)
from shapely.geometry import shape

_COMMON_NAMES = {"red", "green", "blue"}


def build_item(item_id, acquired, grid, footprints, bands, cog_href, thumbnail_href=None):
    """A STAC item describing one COG.

    Args:
        item_id: the scene id.
        acquired: timezone-aware datetime of the acquisition (or of the upload when unknown).
        grid: dict with crs, width, height, transform (6 numbers) and bounds of the COG.
        footprints: dict with "data" and "tile" footprints, each {"4326": geojson, ...}.
        bands: band metadata (see ``bands.band_metadata``).
        cog_href: URL of the COG.
        thumbnail_href: URL of the LARGE thumbnail, if any.

    Returns:
        dict: the item as JSON.
    """
    geometry = (footprints["data"] or footprints["tile"])["4326"]
    item = pystac.Item(
        id=str(item_id),
        geometry=geometry,
        bbox=list(shape(footprints["tile"]["4326"]).bounds),
        datetime=acquired,
        properties={},
    )
    projection = ProjectionExtension.ext(item, add_if_missing=True)
    projection.code = grid["crs"] if grid["crs"].startswith("EPSG:") else None
    if projection.code is None:
        projection.wkt2 = grid["wkt"]
    projection.shape = [grid["height"], grid["width"]]
    projection.transform = list(grid["transform"])
    projection.bbox = list(grid["bounds"])

    asset = pystac.Asset(cog_href, media_type=pystac.MediaType.COG, roles=["data"])
    item.add_asset("data", asset)
    RasterExtension.ext(asset, add_if_missing=True).bands = [_raster_band(b) for b in bands]
    EOExtension.ext(asset, add_if_missing=True).bands = [
        Band.create(
            name=b["name"],
            common_name=b["colorinterp"] if b["colorinterp"] in _COMMON_NAMES else None,
        )
        for b in bands
    ]
    if thumbnail_href:
        item.add_asset(
            "thumbnail",
            pystac.Asset(thumbnail_href, media_type=pystac.MediaType.PNG, roles=["thumbnail"]),
        )
    return item.to_dict(include_self_link=False)


def _raster_band(meta):
    stats = meta["statistics"]
    return RasterBand.create(
        nodata=meta["nodata"],
        data_type=DataType(meta["dtype"]),
        spatial_resolution=abs(meta["resolution"][0]),
        statistics=Statistics.create(
            minimum=stats.get("minimum"),
            maximum=stats.get("maximum"),
            mean=stats.get("mean"),
            stddev=stats.get("stddev"),
            valid_percent=stats.get("valid_percent"),
        ),
        histogram=Histogram.create(**meta["histogram"]) if meta["histogram"] else None,
    )
