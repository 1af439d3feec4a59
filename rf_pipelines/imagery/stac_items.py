"""Scene records from STAC items (any STAC API collection; STAC 1.x, 1.0.0-beta and USGS's
0.7 items).

The item alone gives a complete record: geometry for the footprints, properties for time,
clouds and sun, assets for bands, metadata files and browse images. Landsat items can be
completed from their MTL file (see ``merge_landsat_mtl``).
"""

from datetime import UTC, datetime
from urllib.parse import urlsplit

from rf_pipelines.errors import InvalidInput
from rf_pipelines.imagery import geometry, landsat

_MTL_ASSETS = ("mtl.json", "MTL.json", "mtl.txt", "MTL.txt")
# Media types of band files, without their parameters: GeoTIFF and COG ("image/tiff;
# application=geotiff; profile=cloud-optimized"), and the pre-1.0 STAC name USGS still writes.
_GEOTIFF_TYPES = ("image/tiff", "image/vnd.stac.geotiff")
# JPEG 2000 band files (Earth Search's sentinel-2-l1c has no others); a GeoTIFF of the same
# band is preferred where an item has both.
_JP2_TYPES = ("image/jp2",)


def item_id(item, label="item"):
    """The item's id.

    Raises:
        InvalidInput: not a STAC item (a JSON object of type Feature with an id).
    """
    if not isinstance(item, dict) or item.get("type") != "Feature" or not item.get("id"):
        raise InvalidInput(f"{label}: not a STAC item (a GeoJSON Feature with an id)")
    return str(item["id"])


def scene_key(item, label="item"):
    """The key of the scene an item describes: Landsat product ids without their processing
    date and tier (a Real-Time item re-published as Tier 1 updates the scene), else the id."""
    ident = item_id(item, label)
    if "landsat:wrs_path" in item.get("properties", {}) or ident.startswith(("LC08_", "LC09_")):
        try:
            return landsat.scene_key(ident, label)
        except InvalidInput:
            return ident
    return ident


def product_rank(item):
    """Orders the items of one scene (``scene_key``), highest newest: a Landsat product by
    collection, processing date and tier; any other by processing baseline, then the time
    the item was last updated or created."""
    ident = str(item.get("id", ""))
    props = item.get("properties") or {}
    if scene_key(item) != ident:  # a Landsat product id, keyed without its processing
        return landsat.product_rank(ident)
    baseline = str(props.get("s2:processing_baseline") or props.get("processing:version") or "")
    return f"{baseline}/{rank_time(props.get('updated') or props.get('created'))}"


def rank_time(value):
    """A product's update time as ranked: UTC, microseconds, ``Z`` (``2023-10-09T01:25:21.
    658000Z``), so that the same instant ranks the same whether an item wrote it as ``Z`` or
    ``+00:00`` or a stac-geoparquet file stored it as a timestamp; text that is no time is
    kept as it is."""
    if isinstance(value, datetime):
        when = value
    else:
        try:
            when = datetime.fromisoformat(str(value or "").replace("Z", "+00:00"))
        except ValueError:
            return str(value or "")
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def scene_record(item, datasource, label=None):
    """The scene record of one STAC item.

    Args:
        item: the item as a dict.
        datasource: datasource name for the scenes of this source.
        label: names the item in errors (default: its id).

    Raises:
        InvalidInput: not an item, no geometry, no datetime, unreadable numbers.
    """
    label = label or f"item {item_id(item)}"
    ident = item_id(item, label)
    props = item.get("properties")
    if not isinstance(props, dict):
        raise InvalidInput(f"{label}: the item has no properties")
    if not item.get("geometry"):
        raise InvalidInput(f"{label}: the item has no geometry")
    footprints = geometry.from_geojson(item["geometry"], "EPSG:4326", label)
    assets = item.get("assets") or {}
    return {
        "product_id": ident,
        "scene_key": scene_key(item, label),
        "product_rank": product_rank(item),
        "datasource": datasource,
        "acquisition_date": _acquired(props, label),
        "cloud_cover": _number(props, "eo:cloud_cover", label),
        "sun_azimuth": _number(props, ("view:sun_azimuth", "eo:sun_azimuth"), label),
        "sun_elevation": _number(props, ("view:sun_elevation", "eo:sun_elevation"), label),
        "footprints": {"data": footprints, "tile": footprints},
        "bands": _bands(assets, props.get("eo:bands") or [], label),
        "metadata_files": [_self_href(item)] + [a["href"] for a in assets.values() if _metadata(a)],
        "thumbnails": _thumbnails(assets),
        "scene_metadata": {
            "stac_collection": item.get("collection"),
            "stac_item": _self_href(item),
            "platform": props.get("platform") or props.get("eo:platform"),
            **_grid(props),
        },
    }


def mtl_href(item):
    """The href of a Landsat item's MTL (JSON preferred), or None."""
    assets = item.get("assets") or {}
    for key in _MTL_ASSETS:
        if key in assets and assets[key].get("href"):
            return assets[key]["href"]
    return None


def merge_landsat_mtl(record, flat, mtl_url):
    """Completes an item's record with its MTL: the MTL's product id must match the item's;
    the MTL's sun angles, clouds, bands and category win, the item's geometry is kept.

    Raises:
        InvalidInput: the MTL is malformed or belongs to another product.
    """
    from_mtl = landsat.scene_record(flat, mtl_url)
    if from_mtl["product_id"] != record["product_id"]:
        raise InvalidInput(
            f"{mtl_url}: the MTL describes {from_mtl['product_id']}, "
            f"not the item's {record['product_id']}"
        )
    merged = dict(record)
    for field in (
        "datasource",
        "acquisition_date",
        "cloud_cover",
        "sun_azimuth",
        "sun_elevation",
        "bands",
    ):
        merged[field] = from_mtl[field]
    merged["metadata_files"] = list(dict.fromkeys(record["metadata_files"] + [mtl_url]))
    merged["scene_metadata"] = {**record["scene_metadata"], **from_mtl["scene_metadata"]}
    return merged


def _acquired(props, label):
    value = props.get("datetime") or props.get("start_datetime")
    if not value:
        raise InvalidInput(f"{label}: the item has no datetime")
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as err:
        raise InvalidInput(f"{label}: datetime {value!r} is not ISO 8601") from err
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _number(props, keys, label):
    for key in (keys,) if isinstance(keys, str) else keys:
        if props.get(key) is not None:
            try:
                return float(props[key])
            except (TypeError, ValueError) as err:
                raise InvalidInput(f"{label}: {key} = {props[key]!r} is not a number") from err
    return None


def _bands(assets, item_bands, label):
    bands = []
    # GeoTIFFs first: the first asset of a band name is the one kept.
    ordered = sorted(assets.items(), key=lambda pair: _image_kind(pair[1]) != "geotiff")
    for key, asset in ordered:
        band = _one_band(key, asset, item_bands, label)
        if band is None or any(b["name"] == (band.get("name") or key) for b in bands):
            continue  # not a band, or one already listed by another asset
        raster = (asset.get("raster:bands") or [{}])[0]
        width = band.get("full_width_half_max")
        centre = band.get("center_wavelength")
        bands.append(
            {
                "name": band.get("name") or key,
                "number": len(bands) + 1,
                "common_name": band.get("common_name"),
                "wavelength": (
                    [round(centre - width / 2, 4), round(centre + width / 2, 4)]
                    if centre is not None and width is not None
                    else [centre, centre]
                ),
                "resolution": (
                    raster.get("spatial_resolution") or asset.get("gsd") or band.get("gsd")
                ),
                "url": asset.get("href"),
            }
        )
    return bands


def _one_band(key, asset, item_bands, label):
    """The eo:bands entry of an asset that is one band of data, else None.

    A band is a GeoTIFF (or JPEG 2000) file that describes exactly one band. Roles are
    optional (Planetary Computer's older items have none); where an asset has roles, it is a
    band only with
    "data" (not a thumbnail, overview, metadata or QA mask). STAC 0.x and 1.0.0-beta items
    (USGS's) give the band as an index into the item's properties["eo:bands"].

    Raises:
        InvalidInput: the index is not a band of properties["eo:bands"].
    """
    roles = asset.get("roles")
    described = asset.get("eo:bands")
    if (roles and "data" not in roles) or _image_kind(asset) is None:
        return None
    one_band = len(asset.get("raster:bands") or [{}]) == 1  # raster:bands, where given, agree
    if not isinstance(described, list) or len(described) != 1 or not one_band:
        return None
    band = described[0]
    if isinstance(band, dict):
        return band
    if isinstance(band, int) and 0 <= band < len(item_bands) and isinstance(item_bands[band], dict):
        return item_bands[band]
    raise InvalidInput(
        f"{label}: asset {key}: eo:bands {band!r} is not an index into the item's "
        f"properties eo:bands ({len(item_bands)} bands)"
    )


def _image_kind(asset):
    """``geotiff`` or ``jp2`` for a band file's media type (or, untyped, its file name)."""
    media_type = asset.get("type")
    if media_type is None:  # untyped: known by the file name
        path = urlsplit(str(asset.get("href") or "")).path.lower()
        if path.endswith((".tif", ".tiff")):
            return "geotiff"
        return "jp2" if path.endswith(".jp2") else None
    media_type = media_type.split(";")[0].strip().lower()
    if media_type in _GEOTIFF_TYPES:
        return "geotiff"
    return "jp2" if media_type in _JP2_TYPES else None


# Assets without roles (Planetary Computer's and USGS's older items) are known by their key.
_ROLELESS_THUMBNAILS = {"thumbnail": "SMALL", "reduced_resolution_browse": "LARGE"}
_METADATA_TYPES = ("text/plain", "application/xml", "application/json", "text/xml")


def _metadata(asset):
    """A metadata file: by its role, or, without roles, by a text, XML or JSON media type."""
    roles = asset.get("roles")
    if roles:
        return "metadata" in roles
    return str(asset.get("type") or "").split(";")[0].strip() in _METADATA_TYPES


def _thumbnails(assets):
    thumbs = {}
    for key, asset in assets.items():
        roles = asset.get("roles") or []
        if "thumbnail" in roles:
            thumbs.setdefault("SMALL", asset["href"])
        elif "overview" in roles:
            thumbs.setdefault("LARGE", asset["href"])
        elif not roles and key in _ROLELESS_THUMBNAILS:
            thumbs.setdefault(_ROLELESS_THUMBNAILS[key], asset["href"])
    return thumbs


def _self_href(item):
    for link in item.get("links") or []:
        if link.get("rel") == "self":
            return link.get("href")
    return None


def _grid(props):
    if "landsat:wrs_path" in props:
        return {"path": _int(props["landsat:wrs_path"]), "row": _int(props.get("landsat:wrs_row"))}
    if "mgrs:utm_zone" in props:
        square = f"{props['mgrs:utm_zone']}{props.get('mgrs:latitude_band', '')}"
        return {"mgrs_tile": square + props.get("mgrs:grid_square", "")}
    if "s2:mgrs_tile" in props:
        return {"mgrs_tile": props["s2:mgrs_tile"]}
    return {}


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def landsat_from_item(record, props):
    """A Landsat item's record named as its MTL would name it, from the item alone: the
    datasource (``Landsat 8 C2``, so the scene id is the one the MTL gives) and the MTL's
    collection, category, processing level and sensor in the scene metadata. The bands,
    metadata files and times stay the item's (``merge_landsat_mtl`` takes them from the MTL).
    A record whose product id is no Landsat product id is returned as it is."""
    parts = record["product_id"].split("_")
    if len(parts) == 6:  # Earth Search's ids leave out the processing date
        parts = parts[:4] + [""] + parts[4:]
    if len(parts) != 7 or not parts[0][2:].isdigit() or not parts[5].isdigit():
        return record
    instruments = props.get("instruments")
    metadata = {
        **record["scene_metadata"],
        "collection": str(int(parts[5])),
        "category": props.get("landsat:collection_category") or parts[6],
        "processing_level": props.get("landsat:correction") or parts[1],
        "sensor": "_".join(str(i).upper() for i in instruments)
        if isinstance(instruments, list)
        else None,
    }
    datasource = f"Landsat {int(parts[0][2:])} C{int(parts[5])}"
    return {**record, "datasource": datasource, "scene_metadata": metadata}
