"""Import sources: how to discover a day's scenes and read them into scene records.

A source's ``discover(day)`` returns the day's entries: metadata URLs (bucket layouts) or
STAC items (STAC APIs), which the manifest stores as they are. ``product_id(entry)`` tells,
without reading anything, which product an entry is, so entries already imported are
skipped; ``read_batch(entries)`` returns, for each, a record or the error that stopped it:
``InvalidInput`` when the entry itself is bad (its metadata is missing or malformed: reading
again cannot help), ``TransientError`` when it could not be read (a 5xx answer, a timeout, a
refused connection: a later read may succeed). Discovery errors propagate (the day fails and
is retried); a bad entry fails that scene alone.
"""

import contextlib
import hashlib
import itertools
import json

import orjson

from rf_pipelines import config
from rf_pipelines.errors import (
    ConfigError,
    InvalidInput,
    MissingBucket,
    PermanentError,
    RfError,
    TransientError,
)
from rf_pipelines.imagery import mtl, sentinel2, stac_items
from rf_pipelines.targets import files, reading

STAC_PAGE_SIZE = 500
STAC_TIMEOUT_S = 30


def prefetched(urls, chunk=100):
    """(urls, bodies) chunk by chunk, each body bytes or the exception reading it raised;
    the following objects are read while the caller works on the current chunk (reads wait
    on the network, parsing and storing hold the GIL or wait on the database)."""
    with contextlib.closing(reading.stream(urls)) as bodies:
        for start in range(0, len(urls), chunk):
            current = urls[start : start + chunk]
            yield current, [body for _, body in itertools.islice(bodies, len(current))]


class Sentinel2Bucket:
    """Sentinel-2 on the AWS layout: ``products/{Y}/{M}/{D}/{product}/productInfo.json`` lists
    the product's tiles, each with ``tiles/.../tileInfo.json``; any S3-compatible store.

    A reference is the tile's ``tileInfo.json`` URL, with the name of the product that lists
    it as its fragment (``...tileInfo.json#S2A_MSIL1C_...``): the product is known without
    reading, so a product already imported is skipped and a reprocessed one (a new name at
    the same tile path) is not. The source is ``sentinel2`` on the configured root
    (RF_SENTINEL2_ROOT), ``sentinel2@ROOT`` on another bucket (the listener's S3 events: an
    L2A bucket is not the L1C one).
    """

    slug = "sentinel2"

    def __init__(self, root):
        self.root = root.rstrip("/")
        configured = config.settings().sentinel2_root.rstrip("/")
        self.name = "sentinel2" if self.root == configured else f"sentinel2@{self.root}"

    def discover(self, day, imported=None):
        """The tileInfo.json URLs of every product acquired on ``day``.

        ``imported(product_names)``, when given, tells which of the day's products are
        imported already: their productInfo.json is not read (a product's folder is named
        after it), so a look-back re-check of a complete day reads nothing but the listing.
        """
        folder = f"{self.root}/products/{day.year}/{day.month}/{day.day}"
        try:
            names = files.list_folders(folder)
        except MissingBucket as err:
            raise MissingBucket(
                f"RF_SENTINEL2_ROOT {self.root}: {err}; point RF_SENTINEL2_ROOT at a copy of "
                "the bucket on that store, or unset the endpoint to read AWS's own bucket"
            ) from err
        if imported is not None:
            # Only a product of one tile is known imported by its name (names_one_tile).
            done = imported([name for name in names if sentinel2.names_one_tile(name)])
            names = [name for name in names if name not in done]
        products = [f"{folder}/{name}/productInfo.json" for name in names]
        # A product is one tile since late 2016: as many reads as scenes, so they go deep.
        # A tile listed by two products (a reprocessing) is one reference.
        with contextlib.closing(reading.stream(products)) as bodies:
            return sorted({ref for url, body in bodies for ref in self._tiles(url, body)})

    def _tiles(self, product_url, body):
        """The references a productInfo.json lists; the product's own URL when it is missing,
        refused as bad or malformed (kept as a reference: reading it fails that product
        alone, with the reason)."""
        if isinstance(body, Exception):
            failure = read_failure(product_url, "the product's productInfo.json", body)
            if not isinstance(failure, InvalidInput):
                # The store failed (transient: the day's discovery is retried) or refused
                # this worker (a setting is wrong).
                raise failure from None
            return [product_url]
        try:
            info = orjson.loads(body)
            named = f"#{info['name']}" if isinstance(info.get("name"), str) else ""
            return [f"{self.root}/{tile['path']}/tileInfo.json{named}" for tile in info["tiles"]]
        except (ValueError, KeyError, TypeError):
            return [product_url]

    def product_id(self, ref):
        """The product a reference names without reading it (its fragment), or None.

        None for a product named in the form used before December 2016
        (``S2A_OPER_PRD_MSIL1C_...``): such a product lists many tiles under one name, so
        the name alone cannot tell whether this tile is imported; it is read again.
        """
        url, _, product = ref.partition("#")
        if not (url.endswith("/tileInfo.json") and product):
            return None
        return product if sentinel2.names_one_tile(product) else None

    def label(self, ref):
        return ref

    def read_chunks(self, refs):
        """(refs, outcomes) chunk by chunk: a scene record, or the error that stopped it, for
        each tileInfo.json."""
        done = 0
        for chunk, bodies in prefetched([ref.partition("#")[0] for ref in refs]):
            named = refs[done : done + len(chunk)]  # the chunk's refs, product names kept
            done += len(chunk)
            yield named, [self._record(r, b) for r, b in zip(named, bodies, strict=True)]

    def read_batch(self, refs):
        """A scene record, or the error that stopped it, for each tileInfo.json."""
        return [o for _, outcomes in self.read_chunks(refs) for o in outcomes]

    def _record(self, ref, body):
        if ref.endswith("productInfo.json"):
            return InvalidInput(f"{ref}: productInfo.json is missing or lists no tiles")
        if isinstance(body, Exception):
            return read_failure(ref, "the tile's metadata", body)
        url = ref.partition("#")[0]
        try:
            return sentinel2.scene_record(orjson.loads(body), url, self.root)
        except InvalidInput as err:
            return err
        except ValueError as err:
            return InvalidInput(f"{ref}: not valid JSON ({err})")


class StacApi:
    """Any STAC API collection: a day's items by item search (paged), one record per item.

    With ``landsat_mtl`` each item is completed from its MTL file (``stac_items.
    merge_landsat_mtl``), read from its mirror when ``asset_mirrors`` names one.
    """

    def __init__(self, name, url, collections, datasource, landsat_mtl=False):
        self.name = name
        self.url = url.rstrip("/")
        self.collections = list(collections)
        self.datasource = datasource
        self.landsat_mtl = landsat_mtl
        digest = hashlib.sha256(f"{self.url} {self.collections}".encode()).hexdigest()[:8]
        self.slug = name if ":" not in name else f"stac-{digest}"

    def discover(self, day, imported=None):
        """The items acquired on ``day`` (UTC); ``imported`` is not used (the search
        returns the items themselves).

        Raises:
            TransientError: the API is unreachable, times out or answers 429/5xx.
            PermanentError: the API refuses the search (4xx) or is not a STAC API.
        """
        import requests
        from pystac_client import Client
        from pystac_client.exceptions import APIError
        from pystac_client.stac_api_io import StacApiIO

        where = f"STAC API {self.url} ({', '.join(self.collections)})"
        try:
            # No retries inside: the caller retries the whole search with its own bound.
            io = StacApiIO(timeout=STAC_TIMEOUT_S, max_retries=0)
            client = Client.open(self.url, stac_io=io)
            search = client.search(
                collections=self.collections,
                datetime=f"{day.isoformat()}T00:00:00Z/{day.isoformat()}T23:59:59.999999Z",
                limit=STAC_PAGE_SIZE,
            )
            return list(search.items_as_dicts())
        except APIError as err:
            status = getattr(err, "status_code", None)
            if status is None:  # pystac-client wraps connection errors and timeouts too
                raise TransientError(f"{where} is unreachable: {str(err)[:300]}") from err
            if status >= 500 or status == 429:
                raise TransientError(f"{where} answered {status}: {str(err)[:200]}") from err
            raise PermanentError(
                f"{where} refused the search ({status}): {str(err)[:200]}"
            ) from err
        except (requests.ConnectionError, requests.Timeout) as err:
            raise TransientError(f"{where} is unreachable: {err}") from err
        except (ValueError, NotImplementedError) as err:
            raise PermanentError(f"{where} is not a usable STAC API: {err}") from err

    def product_id(self, item):
        try:
            return stac_items.item_id(item)
        except InvalidInput:
            return None

    def label(self, item):
        return self.product_id(item) or json.dumps(item)[:80]

    def read_chunks(self, items):
        """(items, outcomes) in one chunk (the items came with the search)."""
        yield items, self.read_batch(items)

    def read_batch(self, items):
        records = [self._item_record(item) for item in items]
        if not self.landsat_mtl:
            return records
        urls = [
            self._mtl_url(item) if isinstance(r, dict) else None
            for item, r in zip(items, records, strict=True)
        ]
        wanted = [u for u in urls if u]
        bodies = dict(zip(wanted, reading.read_many(wanted), strict=True))
        return [
            self._with_mtl(record, url, bodies.get(url)) if isinstance(record, dict) else record
            for record, url in zip(records, urls, strict=True)
        ]

    def _item_record(self, item):
        try:
            return stac_items.scene_record(item, self.datasource, f"item {self.label(item)}")
        except PermanentError as err:
            return err

    def _mtl_url(self, item):
        href = stac_items.mtl_href(item)
        return config.mirrored(href) if href else None

    def _with_mtl(self, record, url, body):
        label = f"item {record['product_id']}"
        if url is None:
            return InvalidInput(f"{label}: the item has no MTL asset")
        if isinstance(body, Exception):
            return read_failure(label, f"its MTL file {url}", body)
        try:
            flat = mtl.parse(body.decode("utf-8", "replace"), url)
            return stac_items.merge_landsat_mtl(record, flat, url)
        except PermanentError as err:
            return err


def read_failure(label, what, error):
    """The outcome of an entry whose object could not be read:

    - ``InvalidInput`` when it is missing (the entry names nothing) or the store refuses the
      request as malformed (another 4xx);
    - ``ConfigError`` when the store refuses this worker (401, 403: credentials, a
      requester-pays bucket read without paying): a setting is wrong, not the entry;
    - ``TransientError`` otherwise: a 5xx answer, a timeout or a dropped or refused
      connection that outlived the reader's own retries.
    """
    if isinstance(error, FileNotFoundError):
        return InvalidInput(f"{label}: {what} is missing")
    if isinstance(error, RfError):
        return error
    text = " ".join(str(error).split())[:300]
    status = _http_status(error)
    if status in (401, 403):
        return ConfigError(
            f"{label}: {what} cannot be read: the store refuses this worker ({text}); check "
            "the credentials and whether the bucket is requester-pays"
        )
    if status is not None and 400 <= status < 500 and status not in (408, 429):
        return InvalidInput(f"{label}: {what} cannot be read ({text})")
    return TransientError(f"{label}: {what} cannot be read ({text})")


def _http_status(error):
    """The HTTP status of a store's refusal (boto3 or obstore), or None."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    name = type(error).__name__
    if name in ("PermissionDeniedError", "UnauthenticatedError"):
        return 403
    return None


def get_source(name):
    """The source called ``name``, configured from the settings: ``sentinel2`` (bucket
    layout), ``sentinel2-stac`` (Earth Search), ``landsat`` (USGS STAC API + MTL), or
    ``stac:COLLECTION@URL`` for any STAC API collection.

    Raises:
        InvalidInput: an unknown or malformed source name.
    """
    settings = config.settings()
    if name.startswith("stac:"):
        collection, _, url = name[len("stac:") :].partition("@")
        if not collection or not url.startswith(("http://", "https://")):
            raise InvalidInput(
                f"source {name!r}: write a STAC API collection as stac:COLLECTION@https://host/path"
            )
        return StacApi(name, url, [collection], f"STAC {collection}")
    known = {
        "sentinel2": lambda: Sentinel2Bucket(settings.sentinel2_root),
        "sentinel2-stac": lambda: StacApi(
            "sentinel2-stac",
            settings.sentinel2_stac_url,
            ["sentinel-2-l2a"],
            "Sentinel-2 L2A",
        ),
        "landsat": lambda: StacApi(
            "landsat",
            settings.landsat_stac_url,
            settings.landsat_collections,
            "Landsat C2",
            landsat_mtl=True,
        ),
    }
    if name not in known:
        raise InvalidInput(
            f"unknown source {name!r}; known sources: {', '.join(sorted(known))}, "
            "or stac:COLLECTION@URL"
        )
    return known[name]()


def for_item(item):
    """The source whose records a notified STAC item makes: ``landsat`` for the configured
    Landsat collections (or Landsat ids), ``sentinel2-stac`` for sentinel-2-l2a, else a
    plain item source named ``stac:COLLECTION``.
    """
    settings = config.settings()
    collection = str(item.get("collection") or "")
    if collection in settings.landsat_collections or str(item.get("id", "")).startswith(
        ("LC08_", "LC09_")
    ):
        return get_source("landsat")
    if collection == "sentinel-2-l2a":
        return get_source("sentinel2-stac")
    return StacApi(f"stac:{collection or 'unknown'}", "", [collection], f"STAC {collection}")
