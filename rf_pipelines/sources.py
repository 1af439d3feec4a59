"""Import sources: how to discover a day's scenes and read each one into a scene record.

A source lists references (metadata URLs) for a day, and turns one reference into a scene
record with the parsers of ``imagery/``. Discovery errors propagate (the day fails and is
retried); a bad reference fails that scene alone.
"""

import json
from concurrent.futures import ThreadPoolExecutor

from rf_pipelines import config
from rf_pipelines.errors import InvalidInput
from rf_pipelines.imagery import sentinel2
from rf_pipelines.targets import files

IO_THREADS = 16


class Sentinel2Bucket:
    """Sentinel-2 on the AWS layout: ``products/{Y}/{M}/{D}/{product}/productInfo.json`` lists
    the product's tiles, each with ``tiles/.../tileInfo.json``; any S3-compatible store."""

    name = "sentinel2"

    def __init__(self, root):
        self.root = root.rstrip("/")

    def discover(self, day):
        """The tileInfo.json URLs of every product acquired on ``day``."""
        folder = f"{self.root}/products/{day.year}/{day.month}/{day.day}"
        products = [f"{folder}/{name}/productInfo.json" for name in files.list_folders(folder)]
        with ThreadPoolExecutor(IO_THREADS) as pool:
            # A tile listed by two products (a reprocessing) is one reference.
            return sorted({ref for refs in pool.map(self._tiles, products) for ref in refs})

    def _tiles(self, product_url):
        try:
            info = json.loads(files.read_bytes(product_url))
            return [f"{self.root}/{tile['path']}/tileInfo.json" for tile in info["tiles"]]
        except (ValueError, KeyError, TypeError, FileNotFoundError):
            # Kept as a reference: reading it fails that product alone, with the reason.
            return [product_url]

    def scene_key(self, ref):
        """The scene key of a reference without reading it: the tile path."""
        if ref.endswith("/tileInfo.json"):
            return ref[len(self.root) + 1 : -len("/tileInfo.json")]
        return None

    def read(self, ref):
        """The scene record of one tileInfo.json.

        Raises:
            InvalidInput: missing, not JSON, or not a tile (the message names the file).
        """
        if ref.endswith("productInfo.json"):
            raise InvalidInput(f"{ref}: productInfo.json is missing or lists no tiles")
        try:
            info = json.loads(files.read_bytes(ref))
        except FileNotFoundError as err:
            raise InvalidInput(f"{ref}: the tile's metadata is missing") from err
        except ValueError as err:
            raise InvalidInput(f"{ref}: not valid JSON ({err})") from err
        return sentinel2.scene_record(info, ref, self.root)


def get_source(name):
    """The source called ``name``, configured from the settings.

    Raises:
        InvalidInput: an unknown source name.
    """
    settings = config.settings()
    known = {"sentinel2": lambda: Sentinel2Bucket(settings.sentinel2_root)}
    if name not in known:
        raise InvalidInput(f"unknown source {name!r}; known sources: {', '.join(sorted(known))}")
    return known[name]()
