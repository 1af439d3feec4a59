"""Scene records from stac-geoparquet: Arrow record batches of STAC items, column by column.

stac-geoparquet (written by rustac or stac-geoparquet) stores one item a row: ``id``,
``geometry`` as WKB, the properties as columns of their own (times as timestamps), assets and
links as nested columns. ``batch_records`` gives, for each row, the record
``stac_items.scene_record`` makes of the item, or the reason the row is bad.

The speed comes from the batch's shape: the items of one collection have the same assets
with the same media types, roles and bands, only their hrefs differ. When every non-href
asset field of a batch is the same in every row (checked on the columns, in Arrow), the bands,
thumbnails and metadata files are worked out once, from the first row, and each row only
gets its own hrefs; footprints are made in one call for the batch. Any other batch is read
row by row, each row as an item dict through ``scene_record``: the same records, slower.

The bands are numbered in the file's asset order, which is the first item's written: a file
whose items list their assets in another order than the API numbers them as the file does.
"""

import datetime
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from shapely.geometry import mapping

from rf_pipelines.errors import InvalidInput
from rf_pipelines.imagery import geometry, landsat, stac_items

_CORE = ("type", "id", "geometry", "links", "assets", "collection")
_TIMES = ("datetime", "start_datetime", "created", "updated")
# The properties scene_record and landsat_from_item read; no other column is read.
_PROPERTIES = (
    *_TIMES,
    "eo:cloud_cover",
    "view:sun_azimuth",
    "eo:sun_azimuth",
    "view:sun_elevation",
    "eo:sun_elevation",
    "eo:bands",
    "platform",
    "eo:platform",
    "landsat:wrs_path",
    "landsat:wrs_row",
    "mgrs:utm_zone",
    "mgrs:latitude_band",
    "mgrs:grid_square",
    "s2:mgrs_tile",
    "s2:processing_baseline",
    "processing:version",
    "landsat:collection_category",
    "landsat:correction",
    "instruments",
)


# The asset fields scene_record reads (a band's raster:bands for its resolution alone).
_ASSET_FIELDS = (
    "href",
    "type",
    "roles",
    "gsd",
    "eo:bands.name",
    "eo:bands.common_name",
    "eo:bands.center_wavelength",
    "eo:bands.full_width_half_max",
    "raster:bands.spatial_resolution",
)


def columns(parquet):
    """The columns of an opened stac-geoparquet file (``pyarrow.parquet.ParquetFile``) that
    records are made from: of the assets, only the fields scene_record reads (most of a
    file's columns are other asset fields).

    Raises:
        InvalidInput: the file has no ``id`` or ``geometry`` column (not stac-geoparquet).
    """
    names = parquet.schema_arrow.names
    missing = [name for name in ("id", "geometry") if name not in names]
    if missing:
        raise InvalidInput(
            f"no {' and no '.join(missing)} column: not a stac-geoparquet file of STAC items"
        )
    chosen = [name for name in (*_CORE, *_PROPERTIES) if name in names and name != "assets"]
    if "assets" not in names:
        return chosen
    keys = [field.name for field in parquet.schema_arrow.field("assets").type]
    if any("." in key for key in keys):
        return [*chosen, "assets"]  # a key like "mtl.json" cannot be named in a column path
    paths = [parquet.schema.column(i).path for i in range(len(parquet.schema))]
    wanted = {f"assets.{key}.{field}" for key in keys for field in _ASSET_FIELDS}
    leaves = [path for path in paths if _without_lists(path) in wanted]
    return [*chosen, *leaves]


def _without_lists(path):
    """A Parquet column path without the levels of its lists (``roles.list.element`` is
    ``roles``; writers name a list's element ``element`` or ``item``)."""
    return path.replace(".list.element", "").replace(".list.item", "")


def batch_records(batch, datasource, landsat_names=False, first_row=0, rows=None):
    """The outcome of each row of a record batch of stac-geoparquet items.

    Args:
        batch: a ``pyarrow.RecordBatch`` with (some of) ``columns(schema)``.
        datasource: datasource name for the scenes of this source.
        landsat_names: name Landsat scenes as their MTL would (``stac_items.
            landsat_from_item``).
        first_row: the batch's first row in its file (a row without an id is ``row N``).
        rows: the row number in its file of each row of the batch, when they do not follow
            from ``first_row`` (a batch filtered of its imported rows).

    Returns:
        [(ref, outcome, day)]: the item's id (``row N`` without one), its record or the
        ``InvalidInput`` that stopped it, and its acquisition day (None when unknown).
    """
    rows = rows if rows is not None else range(first_row, first_row + batch.num_rows)
    fast = _uniform_records(batch, datasource, rows)
    if fast is None:
        fast = [
            _row_record(item, datasource, f"row {row}")
            for row, item in zip(rows, items(batch), strict=True)
        ]
    props = _landsat_properties(batch) if landsat_names else None
    found = []
    for index, (ref, outcome, day) in enumerate(fast):
        if props is not None and isinstance(outcome, dict):
            outcome = stac_items.landsat_from_item(outcome, props[index])
        found.append((ref, outcome, day))
    return found


def items(batch):
    """The rows of a record batch as STAC item dicts (the columns read only; nulls left
    out, times as ISO 8601 text)."""
    shapes = _shapes(batch)
    found = []
    for row, (wkb, shape) in zip(batch.to_pylist(), shapes, strict=True):
        item = {key: _clean(row[key]) for key in _CORE if row.get(key) is not None}
        item["geometry"] = _geometry(wkb, shape)
        item["properties"] = {
            key: _iso(value) if key in _TIMES else _clean(value)
            for key, value in row.items()
            if key not in _CORE and value is not None
        }
        found.append(item)
    return found


def _row_record(item, datasource, row):
    ref = str(item.get("id") or row)
    label = f"item {ref}" if item.get("id") else row
    day = _day(item.get("properties", {}))
    if isinstance(item["geometry"], InvalidInput):
        return ref, InvalidInput(f"{label}: {item['geometry']}"), day
    try:
        return ref, stac_items.scene_record(item, datasource, label), day
    except InvalidInput as err:
        return ref, err, day


def _shapes(batch):
    """(WKB, shapely geometry or None) of each row."""
    wkb = batch.column("geometry")
    return list(zip(wkb.to_pylist(), shapely.from_wkb(wkb, on_invalid="ignore"), strict=True))


def _geometry(wkb, shape):
    if wkb is None:
        return None
    if shape is None:
        return InvalidInput("the geometry cannot be read (not WKB)")
    return mapping(shape)


def _day(props):
    for key in ("datetime", "start_datetime"):
        try:
            when = datetime.datetime.fromisoformat(str(props.get(key)).replace("Z", "+00:00"))
        except ValueError:
            continue
        return when.astimezone(datetime.UTC).date() if when.tzinfo else when.date()
    return None


def _iso(value):
    if isinstance(value, datetime.datetime):
        when = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
        return when.isoformat().replace("+00:00", "Z")
    return value


def _clean(value):
    """A nested column's value as JSON would hold it: struct fields that are null left out."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _landsat_properties(batch):
    names = ("landsat:collection_category", "landsat:correction", "instruments")
    present = {name: batch.column(name).to_pylist() for name in names if name in batch.schema.names}
    return [{name: values[i] for name, values in present.items()} for i in range(batch.num_rows)]


# --- the column-wise path -----------------------------------------------------------------


def _uniform_records(batch, datasource, rows):
    """The outcomes of a batch whose rows share everything but hrefs in their assets, made
    column by column; None for any other batch (read row by row instead)."""
    if batch.num_rows == 0:
        return []
    template = _template(batch)
    if template is None:
        return None
    n = batch.num_rows
    ids = batch.column("id").to_pylist()
    col = {name: batch.column(name) for name in batch.schema.names}
    kinds = col["type"].to_pylist() if "type" in col else [None] * n
    acquired = _times(col, "datetime", n)
    started = _times(col, "start_datetime", n)
    numbers = {
        "cloud_cover": _numbers(col, ("eo:cloud_cover",), n),
        "sun_azimuth": _numbers(col, ("view:sun_azimuth", "eo:sun_azimuth"), n),
        "sun_elevation": _numbers(col, ("view:sun_elevation", "eo:sun_elevation"), n),
    }
    if any(values is None for values in numbers.values()):
        return None  # a number column of another type: the row path says which value
    hrefs = {key: col["assets"].field(key).field("href").to_pylist() for key in template["keys"]}
    selves = _self_hrefs(col.get("links"), n)
    ranks = _rank_times(col, n)
    baselines = _texts(col, ("s2:processing_baseline", "processing:version"), n)
    collections = _plain(col, "collection", n)
    platforms = _texts(col, ("platform", "eo:platform"), n)
    grids = _grids(col, n)
    shapes = _shapes(batch)

    outcomes, good = [], []
    for i in range(n):
        ref = str(ids[i] or f"row {rows[i]}")
        label = f"item {ref}" if ids[i] else ref
        when = acquired[i] or started[i]
        day = when.astimezone(datetime.UTC).date() if when else None
        wkb, shape = shapes[i]
        if kinds[i] != "Feature" or not ids[i]:
            outcomes.append(
                (ref, InvalidInput(f"{label}: not a STAC item (a GeoJSON Feature with an id)"), day)
            )
        elif wkb is None:
            outcomes.append((ref, InvalidInput(f"{label}: the item has no geometry"), day))
        elif shape is None:
            outcomes.append(
                (ref, InvalidInput(f"{label}: the geometry cannot be read (not WKB)"), day)
            )
        elif when is None:
            outcomes.append((ref, InvalidInput(f"{label}: the item has no datetime"), day))
        else:
            good.append(i)
            outcomes.append((ref, None, day))
    footprints = _footprints([shapes[i][1] for i in good], [f"item {ids[i]}" for i in good])

    for i, footprint in zip(good, footprints, strict=True):
        ref, _, day = outcomes[i]
        if isinstance(footprint, InvalidInput):
            outcomes[i] = (ref, footprint, day)
            continue
        self_href = selves[i]
        scene_key = _scene_key(ref, grids[i])
        outcomes[i] = (
            ref,
            {
                "product_id": ref,
                "scene_key": scene_key,
                "product_rank": (
                    landsat.product_rank(ref)
                    if scene_key != ref
                    else f"{baselines[i] or ''}/{ranks[i]}"
                ),
                "datasource": datasource,
                "acquisition_date": acquired[i] or started[i],
                "cloud_cover": numbers["cloud_cover"][i],
                "sun_azimuth": numbers["sun_azimuth"][i],
                "sun_elevation": numbers["sun_elevation"][i],
                "footprints": {"data": footprint, "tile": footprint},
                "bands": [{**band, "url": hrefs[key][i]} for key, band in template["bands"]],
                "metadata_files": [self_href] + [hrefs[key][i] for key in template["metadata"]],
                "thumbnails": {size: hrefs[key][i] for size, key in template["thumbnails"]},
                "scene_metadata": {
                    "stac_collection": collections[i],
                    "stac_item": self_href,
                    "platform": platforms[i],
                    **grids[i],
                },
            },
            day,
        )
    return outcomes


def _template(batch):
    """What the first row's assets make (bands, thumbnails, metadata files, each as the
    asset key whose href it takes), when every row's assets are the same but for their
    hrefs; None otherwise."""
    names = batch.schema.names
    if "assets" in names and not _same_but_hrefs(batch.column("assets")):
        return None
    if "eo:bands" in names and not _periodic(batch.column("eo:bands"), 1):
        return None
    first = items(batch.slice(0, 1))[0]
    assets = first.get("assets") or {}
    by_href = {asset.get("href"): key for key, asset in assets.items()}
    if len(by_href) != len(assets) or any("type" not in a for a in assets.values()):
        return None  # a shared href, or a band known by its file name: row by row
    try:
        bands = stac_items._bands(assets, first["properties"].get("eo:bands") or [], "row 0")
    except InvalidInput:
        return None
    thumbnails = stac_items._thumbnails(assets)
    return {
        "keys": list(assets),
        "bands": [(by_href[b["url"]], {k: v for k, v in b.items() if k != "url"}) for b in bands],
        "metadata": [key for key, asset in assets.items() if stac_items._metadata(asset)],
        "thumbnails": [(size, by_href[href]) for size, href in thumbnails.items()],
    }


def _same_but_hrefs(assets):
    """Every asset is present in every row or in none, with the same fields but its href."""
    for index in range(assets.type.num_fields):
        asset = assets.field(index)
        if not _periodic(asset.is_valid(), 1):
            return False
        fields = [f.name for f in asset.type]
        if not all(_periodic(asset.field(f), 1) for f in fields if f != "href"):
            return False
    return True


def _periodic(array, period):
    """Whether ``array[i] == array[i % period]`` for every row, nulls included (Arrow
    compute on the columns; nested types field by field)."""
    n = len(array)
    if n <= period:
        return True
    if array.null_count and not _periodic(array.is_valid(), period):
        return False
    kind = array.type
    if pa.types.is_struct(kind):
        return all(_periodic(array.field(i), period) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        lengths = pc.fill_null(pc.list_value_length(array), 0)
        if not _periodic(lengths, period):
            return False
        inner = pc.sum(lengths.slice(0, period)).as_py() or 0
        return inner == 0 or _periodic(array.flatten(), inner)
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
    try:
        again = array.take(pa.array(np.arange(n) % period))
        same = pc.equal(array, again)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return False
    return pc.all(same, skip_nulls=True).as_py() is not False


def _times(col, name, n):
    if name not in col:
        return [None] * n
    values = col[name]
    if not pa.types.is_timestamp(values.type):
        return _parsed_times(values.to_pylist())
    # Through numpy: pyarrow's to_pylist converts each zoned time on its own, 4 times slower.
    naive = _utc_microseconds(values).to_numpy(zero_copy_only=False).astype(object)
    return [None if v is None else v.replace(tzinfo=datetime.UTC) for v in naive]


def _utc_microseconds(values):
    """A timestamp column as UTC times without a zone, in microseconds (Arrow stores zoned
    times as UTC: the cast keeps them; nanoseconds are cut, as Python's datetime does)."""
    return values.cast(pa.timestamp("us"), safe=False)


def _parsed_times(values):
    found = []
    for value in values:
        try:
            when = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            found.append(None)
            continue
        found.append(when if when.tzinfo else when.replace(tzinfo=datetime.UTC))
    return found


def _numbers(col, names, n):
    """The first of ``names`` that a row has, as a float; None when a column is not numeric."""
    found = [None] * n
    for name in reversed(names):
        if name not in col:
            continue
        values = col[name]
        if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
            return None
        found = [found[i] if v is None else float(v) for i, v in enumerate(values.to_pylist())]
    return found


def _texts(col, names, n):
    found = [None] * n
    for name in reversed(names):
        if name in col:
            values = _plain(col, name, n)
            found = [v if v else found[i] for i, v in enumerate(values)]
    return found


def _plain(col, name, n):
    if name not in col:
        return [None] * n
    values = col[name]
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    return values.to_pylist()


def _rank_times(col, n):
    """Each row's ``stac_items.rank_time`` of its update (else creation) time; for timestamp
    columns made by Arrow in one pass (ten times faster than each row's strftime)."""
    present = [col[name] for name in ("updated", "created") if name in col]
    if not present:
        return [""] * n
    if all(pa.types.is_timestamp(values.type) for values in present):
        times = pc.coalesce(*(_utc_microseconds(values) for values in present))
        # %S of microseconds is seconds with six decimals: rank_time's %S.%f.
        return pc.fill_null(pc.strftime(times, format="%Y-%m-%dT%H:%M:%SZ"), "").to_pylist()
    updated = _times(col, "updated", n)
    created = _times(col, "created", n)
    return [stac_items.rank_time(u or c) for u, c in zip(updated, created, strict=True)]


def _self_hrefs(links, n):
    """The href of each row's first ``self`` link, or None."""
    found = [None] * n
    if links is None:
        return found
    flat = links.flatten()
    rows = pc.list_parent_indices(links).to_pylist()
    rels = flat.field("rel").to_pylist()
    hrefs = flat.field("href").to_pylist()
    for row, rel, href in zip(rows, rels, hrefs, strict=True):
        if rel == "self" and found[row] is None:
            found[row] = href
    return found


def _grids(col, n):
    """Each row's ``stac_items._grid``: WRS path and row, or the MGRS tile."""
    names = (
        "landsat:wrs_path",
        "landsat:wrs_row",
        "mgrs:utm_zone",
        "mgrs:latitude_band",
        "mgrs:grid_square",
        "s2:mgrs_tile",
    )
    values = {name: _plain(col, name, n) for name in names if name in col}
    found = []
    for i in range(n):
        props = {name: column[i] for name, column in values.items() if column[i] is not None}
        found.append(stac_items._grid(props))
    return found


def _scene_key(ident, grid):
    if "path" in grid or ident.startswith(("LC08_", "LC09_")):
        try:
            return landsat.scene_key(ident, "item")
        except InvalidInput:
            return ident
    return ident


def _footprints(shapes, labels):
    """``geometry.from_geojson`` of each shape: the plain polygons (one closed outer ring
    within ±180° and Web Mercator's latitudes, not crossing the antimeridian) all at once,
    with the same numbers as ``geometry._simple_footprints``; any other one by itself, a bad
    one failing alone."""
    found = [None] * len(shapes)
    indexes, coords, bounds = _plain_polygons(shapes)
    if indexes:
        lonlat = coords.tolist()
        # x as geometry.mercator computes it (the same float operations), y by math: numpy's
        # vectorised log and tan differ from libm's in the last bit.
        xs = (geometry.EARTH_RADIUS_M * (coords[:, 0] * (math.pi / 180))).tolist()
        log, tan, radians, quarter = math.log, math.tan, math.radians, math.pi / 4
        radius = geometry.EARTH_RADIUS_M
        ys = [radius * log(tan(quarter + radians(lat) / 2)) for lat in coords[:, 1].tolist()]
        mercator = [[x, y] for x, y in zip(xs, ys, strict=True)]
        for index, (start, end) in zip(indexes, bounds, strict=True):
            found[index] = {
                "4326": {"type": "Polygon", "coordinates": [lonlat[start:end]]},
                "3857": {"type": "Polygon", "coordinates": [mercator[start:end]]},
            }
    for index, (shape, label) in enumerate(zip(shapes, labels, strict=True)):
        if found[index] is None:
            try:
                found[index] = geometry.from_geojson(_polygon_geojson(shape), "EPSG:4326", label)
            except InvalidInput as err:
                found[index] = err
    return found


def _plain_polygons(shapes):
    """The shapes that ``geometry._simple_footprints`` would take: their indexes, the
    coordinates of all the shapes given, and each one's (start, end) in them."""
    shapes = np.asarray(shapes, dtype=object)
    # Polygons without holes: their coordinates are their outer ring's.
    candidates = np.flatnonzero(
        (shapely.get_type_id(shapes) == 3) & (shapely.get_num_interior_rings(shapes) == 0)
    )
    coords, owner = shapely.get_coordinates(shapes[candidates], return_index=True)
    counts = np.bincount(owner, minlength=len(candidates))
    ends = np.cumsum(counts)
    starts = ends - counts
    ok = counts >= 4
    if not ok.any():
        return [], coords, []
    candidates, starts, ends = candidates[ok], starts[ok], ends[ok]
    lons, lats = coords[:, 0], coords[:, 1]
    west, east = np.minimum.reduceat(lons, starts), np.maximum.reduceat(lons, starts)
    high = np.maximum.reduceat(np.abs(lats), starts)
    finite = np.logical_and.reduceat(np.isfinite(coords).all(axis=1), starts)
    closed = (coords[starts] == coords[ends - 1]).all(axis=1)
    plain = (
        closed
        & finite
        & (west >= -180)
        & (east <= 180)
        & (east - west <= 180)
        & (high <= geometry.MERCATOR_LIMIT)
    )
    bounds = list(zip(starts[plain].tolist(), ends[plain].tolist(), strict=True))
    return candidates[plain].tolist(), coords, bounds


def _polygon_geojson(shape):
    """GeoJSON of a shapely geometry; a Polygon's outer ring straight from its coordinates
    (``mapping`` costs several times more, and the footprint keeps the outer ring alone)."""
    if shape.geom_type != "Polygon" or shape.is_empty:
        return mapping(shape)
    return {"type": "Polygon", "coordinates": [shapely.get_coordinates(shape.exterior).tolist()]}
