"""Footprint geometry from corner coordinates or geometries in any CRS: GeoJSON in EPSG:4326 and
EPSG:3857, split at the antimeridian instead of wrapping round the globe."""

from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_geom
from shapely.affinity import translate
from shapely.geometry import MultiPolygon, Polygon, box, mapping, shape

from rf_pipelines.errors import InvalidInput

_EAST = box(-180, -90, 180, 90)
_BEYOND = box(180, -90, 540, 90)


def from_lonlat_ring(ring):
    """Footprints of a ring of (lon, lat) corners that may straddle ±180°.

    Returns:
        dict "4326" and "3857" -> GeoJSON.
    """
    lons = [lon for lon, _ in ring]
    if max(lons) - min(lons) > 180:  # corners on both sides of the antimeridian
        ring = [(lon + 360 if lon < 0 else lon, lat) for lon, lat in ring]
    polygon = Polygon(ring)
    parts = [polygon.intersection(_EAST), translate(polygon.intersection(_BEYOND), xoff=-360)]
    parts = [p for p in parts if not p.is_empty and p.area > 0]
    geometry = parts[0] if len(parts) == 1 else MultiPolygon(parts)
    return {"4326": mapping(geometry), "3857": _to_3857(geometry)}


def from_geojson(geometry, crs, label):
    """Footprints of a GeoJSON geometry given in ``crs`` (an EPSG code, URN or WKT).

    Raises:
        InvalidInput: an unknown CRS or a broken geometry.
    """
    try:
        source = CRS.from_user_input(_urn_to_epsg(crs))
    except CRSError as err:
        raise InvalidInput(f"{label}: unknown CRS {crs!r}") from err
    try:
        in_4326 = transform_geom(
            source, "EPSG:4326", geometry, antimeridian_cutting=True, precision=-1
        )
        shape(in_4326)
    except Exception as err:  # noqa: BLE001 - GDAL and shapely raise many kinds
        raise InvalidInput(f"{label}: the geometry cannot be read ({err})") from err
    return {"4326": in_4326, "3857": _to_3857(shape(in_4326))}


def _to_3857(geometry):
    parts = getattr(geometry, "geoms", [geometry])
    projected = [shape(transform_geom("EPSG:4326", "EPSG:3857", mapping(p))) for p in parts]
    return mapping(projected[0] if len(projected) == 1 else MultiPolygon(projected))


def _urn_to_epsg(crs):
    """``urn:ogc:def:crs:EPSG:8.8.1:32619`` (as in tileInfo.json) -> ``EPSG:32619``."""
    if isinstance(crs, str) and crs.lower().startswith("urn:ogc:def:crs:epsg:"):
        return "EPSG:" + crs.rsplit(":", 1)[-1]
    return crs
