"""The stac-geoparquet test files, made from real STAC items with rustac's own writer.

``python -m tests.geoparquet`` rebuilds ``tests/data/geoparquet/`` (provenance in
tests/data/PROVENANCE.md): the committed files are what it writes.
"""

import copy
import json

import pyarrow as pa
import pyarrow.parquet as pq
import rustac

from tests.conftest import TESTDATA

FOLDER = TESTDATA / "geoparquet"
SENTINEL2 = FOLDER / "earthsearch_v1_sentinel-2-l2a.parquet"
S2_ITEM = TESTDATA / "stac" / "earthsearch_v1_S2A_13TDE_20231008_0_L2A.json"
# Rows of SENTINEL2 that are bad on purpose: no datetime (written by rustac) and no geometry
# (rustac refuses to write one, so the column's value is cleared afterwards with pyarrow).
NO_DATETIME = "S2A_13TDE_20231008_8_L2A"
NO_GEOMETRY = "S2A_13TDE_20231008_9_L2A"


def s2_items(count=5):
    """The real Earth Search item, then copies of it under the ids of later sequence
    numbers (``..._1_L2A``, ...): each its own scene, as re-acquisitions are."""
    item = json.loads(S2_ITEM.read_text())
    found = []
    for n in range(count):
        copied = copy.deepcopy(item)
        if n:
            copied["id"] = item["id"].replace("_0_L2A", f"_{n}_L2A")
        found.append(copied)
    return found


def write(items, path):
    """Writes ``items`` as stac-geoparquet with rustac's writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rustac.write_sync(str(path), items)


def clear_geometry(path, ident, value=None):
    """Clears the geometry of item ``ident`` in the file, or sets it to the bytes ``value``
    (pyarrow keeps the file's metadata)."""
    table = pq.read_table(path)
    kept = {k: v for k, v in pq.ParquetFile(path).metadata.metadata.items() if k != b"ARROW:schema"}
    table = table.replace_schema_metadata(kept)  # stac-geoparquet's and GeoParquet's "geo"
    ids, shapes = table.column("id").to_pylist(), table.column("geometry").to_pylist()
    values = [value if i == ident else g for i, g in zip(ids, shapes, strict=True)]
    index = table.schema.get_field_index("geometry")
    table = table.set_column(index, table.schema.field(index), pa.array(values, pa.binary()))
    pq.write_table(table, path)


def build_sentinel2(path=SENTINEL2):
    """Five good rows, then one without datetime and one without geometry."""
    good = s2_items()
    no_datetime, no_geometry = copy.deepcopy(good[0]), copy.deepcopy(good[0])
    no_datetime["id"], no_geometry["id"] = NO_DATETIME, NO_GEOMETRY
    no_datetime["properties"]["datetime"] = None
    write([*good, no_datetime, no_geometry], path)
    clear_geometry(path, NO_GEOMETRY)


if __name__ == "__main__":
    build_sentinel2()
    print(SENTINEL2, SENTINEL2.stat().st_size)
