"""Archive imports from stac-geoparquet: ``import sentinel2-stac --from-geoparquet`` of 100,000
scenes from a local file, against the STAC API path (rustac's STAC API server, item search,
``import sentinel2-stac --date``) on the first 5,000 of the same items, in the same run; and
a second read of the same file, where every scene is already imported.

The items are the real Earth Search item ``tests/data/stac/earthsearch_v1_S2A_13TDE_
20231008_0_L2A.json`` under new ids (``S2A_13TDE_20231008_{n}_L2A``: each its own scene, all
acquired on 2023-10-08). rustac's own writer (``rustac translate``) writes them as
stac-geoparquet, 10,000 items a file (it holds a file's items in memory: 2.4 GB for 10,000 of
these); pyarrow joins those files, row group by row group, into one file of 100,000 rows.
The file is kept in the system's temporary folder for later runs.

Where an import's time goes, measured apart: the Python work alone (the file's batches read,
their records and COPY lines made, no database) and PostgreSQL's alone (those lines loaded
as the import's writer loads them, a transaction a batch, into a new catalog).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner

from bench.imports import _drop, _fresh_database
from bench.timing import row
from rf_pipelines import config, services
from rf_pipelines.catalog import db, imports
from rf_pipelines.cli import cli
from rf_pipelines.imagery import stac_arrow
from rf_pipelines.tasks.geoparquet import BATCH_ROWS, _collector_paused

ITEM = (
    Path(__file__).resolve().parents[1]
    / "tests"
    / "data"
    / "stac"
    / "earthsearch_v1_S2A_13TDE_20231008_0_L2A.json"
)
DAY = "2023-10-08"
CHUNK = 10_000
CACHE = Path(tempfile.gettempdir()) / "rf-bench-geoparquet"


def items_text(first, count):
    """NDJSON of ``count`` copies of the real item, numbered from ``first``."""
    item = json.loads(ITEM.read_text())
    text = json.dumps(item, separators=(",", ":"))
    return "".join(
        text.replace(item["id"], f"S2A_13TDE_20231008_{n}_L2A") + "\n"
        for n in range(first, first + count)
    )


def build_file(count):
    """The stac-geoparquet file of ``count`` items (made once; kept in CACHE)."""
    rustac = shutil.which("rustac") or str(Path(sys.executable).parent / "rustac")
    version = subprocess.run([rustac, "--version"], capture_output=True, text=True).stdout
    path = CACHE / f"s2-{count}-{version.split()[-1] if version else 'rustac'}.parquet"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as folder:
        parts = []
        for first in range(0, count, CHUNK):
            ndjson = Path(folder) / f"{first}.ndjson"
            ndjson.write_text(items_text(first, min(CHUNK, count - first)))
            part = Path(folder) / f"{first}.parquet"
            subprocess.run([rustac, "translate", str(ndjson), str(part)], check=True)
            ndjson.unlink()
            parts.append(part)
        joined = Path(folder) / "joined.parquet"
        first = pq.ParquetFile(parts[0])
        metadata = {k: v for k, v in first.metadata.metadata.items() if k != b"ARROW:schema"}
        schema = first.schema_arrow.with_metadata(metadata)
        with pq.ParquetWriter(joined, schema) as out:
            for part in parts:
                out.write_table(pq.read_table(part).replace_schema_metadata(metadata))
        joined.rename(path)
    return path


def run(repeat=1, count=100_000, baseline_count=5_000):
    """Yields benchmark rows; ``repeat`` is unused (an import is one long measurement)."""
    import logging

    logging.getLogger("luigi-interface").setLevel(logging.WARNING)
    path = build_file(count)
    with tempfile.TemporaryDirectory(prefix="rf-bench-geoparquet-") as folder:
        os.environ["RF_DATA_ROOT"] = folder
        config.settings.cache_clear()

        admin, name = _fresh_database()
        try:
            first = _cli_seconds(["import", "sentinel2-stac", "--from-geoparquet", str(path)])
            os.utime(path)  # a new version of the file: read again, every scene unchanged
            again = _cli_seconds(["import", "sentinel2-stac", "--from-geoparquet", str(path)])
        finally:
            _drop(admin, name)

        items = Path(folder) / "items.json"
        features = items_text(0, baseline_count).splitlines()
        items.write_text('{"type":"FeatureCollection","features":[' + ",".join(features) + "]}")
        admin, name = _fresh_database()
        try:
            with services.stac_api([items], Path(folder) / "stac", port=_free_port()) as url:
                os.environ["RF_SENTINEL2_STAC_URL"] = url
                config.settings.cache_clear()
                by_api = _cli_seconds(["import", "sentinel2-stac", "--date", DAY])
        finally:
            _drop(admin, name)

        admin, name = _fresh_database()
        try:
            python, batches = _python_seconds(path)
            postgres = _postgres_seconds(batches)
        finally:
            _drop(admin, name)

    api_rate = baseline_count / by_api
    yield row(
        f"geoparquet: {count:,} scenes from a local file: {count / first:,.0f} scenes/s",
        first,
        f"STAC API: {api_rate:,.0f}/s",
        by_api * count / baseline_count,
    )
    yield row(
        f"geoparquet: the same file again, all unchanged: {count / again:,.0f} rows/s",
        again,
        "first read (above)",
        first,
    )
    yield row(
        f"geoparquet, Python alone: records and COPY lines: {count / python:,.0f} rows/s",
        python,
        "the import (first row)",
        first,
    )
    yield row(
        f"geoparquet, PostgreSQL alone: COPY of those lines: {count / postgres:,.0f} rows/s",
        postgres,
        "the import (first row)",
        first,
    )


def _python_seconds(path):
    """Seconds to read the file and make its COPY lines (as ImportGeoparquet does, without
    a database), and the lines of each batch."""
    placeholder = uuid.uuid4()  # the datasource's id, put in once the catalog has one
    batches = []
    start = time.perf_counter()
    with _collector_paused():
        parquet = pq.ParquetFile(path)
        columns = stac_arrow.columns(parquet)
        first = 0
        for batch in parquet.iter_batches(BATCH_ROWS, columns=columns):
            outcomes = stac_arrow.batch_records(batch, "Sentinel-2 L2A", first_row=first)
            first += batch.num_rows
            records = [record for _, record, _ in outcomes]
            for record in records:
                record["scene_metadata"]["import_source"] = "sentinel2-stac"
            ids = {"Sentinel-2 L2A": placeholder}
            batches.append(imports.scene_lines(records, ids, "ImportGeoparquet@bench"))
    seconds = time.perf_counter() - start
    return seconds, [(placeholder, lines) for lines in batches]


def _postgres_seconds(batches):
    """Seconds for PostgreSQL to load the batches' lines, a transaction each, as the
    import's writer does (the lines made beforehand)."""
    url = config.settings().database_url
    with db.transaction(url) as conn:
        ident = str(imports.import_datasources(conn, ["Sentinel-2 L2A"])["Sentinel-2 L2A"])
    ready = [
        {key: line.replace(str(placeholder), ident) for key, line in lines.items()}
        for placeholder, lines in batches
    ]
    start = time.perf_counter()
    for lines in ready:
        with db.transaction(url) as conn:
            imports.copy_scene_lines(conn, lines, ["ImportGeoparquet@bench"])
    return time.perf_counter() - start


def _cli_seconds(args):
    start = time.perf_counter()
    result = CliRunner().invoke(cli, args + ["--local-scheduler"])
    seconds = time.perf_counter() - start
    assert result.exit_code == 0, result.output[-2000:]
    return seconds


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
