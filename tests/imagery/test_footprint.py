"""Footprints: valid-data outline inside the bounds, both EPSGs, cut at the antimeridian; views
that reach off the planet keep the disk on the Earth, and footprints run round the poles."""

import pytest
import rasterio
import rasterio.windows
import shapely
from shapely.geometry import Point, shape

from rf_pipelines.imagery import footprint, records
from tests import rasters


def test_data_footprint_is_one_polygon_inside_the_tile_footprint():
    with rasterio.open(rasters.GEOTIFF / "RGB.byte.tif") as dataset:
        data = footprint.data_footprints(dataset)
        tile = footprint.tile_footprints(dataset)
    for epsg in ("4326", "3857"):
        data_shape, tile_shape = shape(data[epsg]), shape(tile[epsg])
        assert data[epsg]["type"] == "Polygon"
        assert tile_shape.buffer(tile_shape.length / 1000).contains(data_shape)
        # RGB.byte.tif's valid pixels are a tilted square inside a larger grid.
        assert 0.5 < data_shape.area / tile_shape.area < 0.8
    assert len(data["4326"]["coordinates"][0]) < 50


def test_internal_mask_shapes_the_data_footprint():
    path = rasters.GEOTIFF / "hro" / "201404_13SED190110_201404_0x1500m_CL_1_mask.tif"
    with rasterio.open(path) as dataset:
        data = shape(footprint.data_footprints(dataset)["4326"])
        tile = shape(footprint.tile_footprints(dataset)["4326"])
    assert data.area < 0.99 * tile.area


def test_footprint_crossing_the_antimeridian_is_cut(tmp_path):
    with rasterio.open(rasters.antimeridian_tif(tmp_path / "am.tif")) as dataset:
        for footprints in (footprint.tile_footprints(dataset), footprint.data_footprints(dataset)):
            geometry = footprints["4326"]
            assert geometry["type"] == "MultiPolygon"
            parts = [shape({"type": "Polygon", "coordinates": c}) for c in geometry["coordinates"]]
            west = [p for p in parts if p.bounds[2] <= -179.0]
            east = [p for p in parts if p.bounds[0] >= 179.0]
            assert west and east and len(west) + len(east) == len(parts)


def test_world_raster_spans_the_globe_without_wrapping():
    with rasterio.open(rasters.GEOTIFF / "world.byte.tif") as dataset:
        bounds = shape(footprint.tile_footprints(dataset)["4326"]).bounds
    assert bounds[0] == -180 and bounds[2] == 180


# Web Mercator's world: x and y within ±20037508.34 m (±180°, ±85.05°).
MERCATOR_EDGE = 20037508.35
SUB_SATELLITE = (140.7, 0.0)  # image_geos.tif: Himawari, +proj=geos +lon_0=140.7


def _shapes(footprints):
    return {epsg: shape(geometry) for epsg, geometry in footprints.items()}


def _inside_mercator_world(geometry):
    return all(abs(v) <= MERCATOR_EDGE for v in shapely.get_coordinates(geometry).ravel())


def _all_parts(geometry):
    return getattr(geometry, "geoms", [geometry])


def test_geostationary_footprints_are_the_disk_on_the_earth():
    with rasterio.open(rasters.GEOTIFF / "image_geos.tif") as dataset:
        tile = _shapes(footprint.tile_footprints(dataset))
        data = _shapes(footprint.data_footprints(dataset))
    for footprints in (tile, data):
        lonlat = footprints["4326"]
        assert lonlat.is_valid and footprints["3857"].is_valid
        assert lonlat.contains(Point(SUB_SATELLITE))
        assert lonlat.contains(Point(139.7, 35.7)) and lonlat.contains(Point(151.2, -33.9))
        # The far side of the Earth, and beyond the northern limb, are not in view.
        assert not lonlat.intersects(Point(-39.3, 0)) and not lonlat.intersects(Point(140.7, 84))
        # The visible disk ends at about ±81.3° latitude.
        assert 78 < lonlat.bounds[3] < 81.3 and -81.3 < lonlat.bounds[1] < -78
        # The east of the view lies past 180°: cut there into two parts.
        lons = {round(x) for part in _all_parts(lonlat) for x, _ in part.exterior.coords}
        assert {-180, 180} <= lons
        assert _inside_mercator_world(footprints["3857"])
    # Nearly every pixel on the Earth has data: the data footprint is the disk too.
    assert tile["4326"].symmetric_difference(data["4326"]).area < 0.03 * tile["4326"].area


def test_a_geostationary_corner_centred_in_space_keeps_its_part_on_the_earth(tmp_path):
    # The north-east corner of the real view: its centre and corners are in space, only its
    # south-west part sees the Earth.
    crop = tmp_path / "corner.tif"
    with rasterio.open(rasters.GEOTIFF / "image_geos.tif") as src:
        window = rasterio.windows.Window(700, 0, 200, 200)
        profile = {**src.profile, "width": 200, "height": 200}
        profile["transform"] = src.window_transform(window)
        with rasterio.open(crop, "w", **profile) as dst:
            dst.write(src.read(window=window))
    with rasterio.open(crop) as dataset:
        grid = records.grid_info(dataset)
        tile = _shapes(footprint.tile_footprints(dataset))["4326"]
    assert grid["resolution_meters"] == pytest.approx(10_000, rel=0.01)
    assert tile.is_valid and 0 < tile.area
    # Everything in the footprint is in view: north-east of the sub-satellite point, short
    # of the limb.
    west, south, east, north = tile.bounds
    assert south > 20 and north < 81.3


def test_polar_stereographic_footprints_run_round_the_pole():
    with rasterio.open(rasters.GEOTIFF / "nt_20201024_f18_nrt_s.tif") as dataset:
        tile = _shapes(footprint.tile_footprints(dataset))
        data = _shapes(footprint.data_footprints(dataset))
    for footprints in (tile, data):
        lonlat, mercator = footprints["4326"], footprints["3857"]
        assert lonlat.geom_type == "Polygon" and lonlat.is_valid and mercator.is_valid
        # Round the pole: to ±180° along the cut and down to -90°, not the rest of the world.
        assert lonlat.bounds[:3] == (-180, -90, 180) and -45 < lonlat.bounds[3] < -35
        for lon in (-179.5, -90, 0, 90, 179.5):
            assert lonlat.contains(Point(lon, -89.9)) and lonlat.contains(Point(lon, -60))
            assert not lonlat.intersects(Point(lon, -20))
        # Antarctica has no sea ice, but a footprint has no holes.
        assert len(lonlat.interiors) == 0
        # In Web Mercator, stopped at its -85.05° edge.
        assert mercator.bounds[1] == pytest.approx(-MERCATOR_EDGE, abs=1)
        assert _inside_mercator_world(mercator)
    assert abs(data["4326"].area - tile["4326"].area) < 0.02 * tile["4326"].area


def test_raster_touching_a_pole_stays_inside_web_mercator():
    path = rasters.GEOTIFF / "Copernicus_DSM_COG_30_S90_00_W164_00_DEM.tif"
    with rasterio.open(path) as dataset:
        for footprints in (footprint.tile_footprints(dataset), footprint.data_footprints(dataset)):
            shapes = _shapes(footprints)
            assert shapes["4326"].bounds == pytest.approx((-164.004, -90, -163.004, -89), abs=1e-3)
            # Latitudes -90 to -89 are beyond Web Mercator's -85.05°: nothing is left of it.
            assert shapes["3857"].is_empty and footprints["3857"]["type"] == "Polygon"


def test_web_mercator_by_its_formula_agrees_with_proj():
    """Footprints in EPSG:3857 use Web Mercator's spherical formula rather than a pyproj call
    a ring: it must agree with PROJ to the millimetre, up to the limits."""
    import random

    from rf_pipelines.imagery import geometry

    rng = random.Random(7)
    lons = [-180.0, 180.0, 0.0, *(rng.uniform(-180, 180) for _ in range(2000))]
    lats = [-geometry.MERCATOR_LIMIT, geometry.MERCATOR_LIMIT, 0.0]
    lats += [rng.uniform(-geometry.MERCATOR_LIMIT, geometry.MERCATOR_LIMIT) for _ in range(2000)]
    x, y = geometry.mercator(lons, lats)
    px, py = geometry.transformer("EPSG:4326", "EPSG:3857").transform(lons, lats)
    assert max(abs(a - b) for a, b in zip([*x, *y], [*px, *py], strict=True)) < 1e-3
