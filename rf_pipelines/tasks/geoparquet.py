"""Imports from stac-geoparquet files: a whole collection's items in one file, without a STAC
API page or a metadata read per scene.

    ImportGeoparquet(source, url, fingerprint)   every row's scene; fails naming the bad rows

One task per file (a backfill of years is a few files: luigid's task count stays small). The
file is read in batches of BATCH_ROWS rows; each batch's scenes are loaded with COPY and
merged in a transaction of their own, together with its bad rows' failures, while the next
batch is read. The marker is written when no row failed, so a rerun of a finished file reads
nothing, and a rerun after failures reads the file again, where the scenes already imported
change nothing. ``fingerprint`` (size and modification time, or the S3 ETag) makes a new
version of the file at the same URL a new task.
"""

import contextlib
import datetime
import functools
import gc
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor

import luigi

from rf_pipelines import config, sources
from rf_pipelines.catalog import db, imports
from rf_pipelines.errors import InvalidInput, PermanentError
from rf_pipelines.targets import files
from rf_pipelines.tasks.base import RfTask
from rf_pipelines.tasks.imports import ImportBatch

BATCH_ROWS = 20_000
# The failures a report lists (all are in import_failures).
REPORTED_FAILURES = 20


class RowsFailed(PermanentError):
    """Some rows of a file could not be imported; the others are."""


def file_source(name):
    """The STAC source whose scenes a geoparquet file holds.

    Raises:
        InvalidInput: an unknown source, or one that is not made of STAC items.
    """
    source = sources.get_source(name)
    if not isinstance(source, sources.StacApi):
        raise InvalidInput(
            f"source {name!r} reads a bucket layout, not STAC items; a stac-geoparquet file "
            "is imported as sentinel2-stac, landsat or stac:COLLECTION@URL"
        )
    return source


class ImportGeoparquet(RfTask):
    """Imports every row of a stac-geoparquet file as the source's STAC path would import
    the same item (Landsat items from the item alone: no MTL is read); bad rows fail alone,
    with their reason in import_failures."""

    workflow = "imports"
    source = luigi.Parameter(description="Source the items belong to, e.g. sentinel2-stac.")
    url = luigi.Parameter(description="The stac-geoparquet file: a local path or s3:// URL.")
    fingerprint = luigi.Parameter(
        description="The file's size and modification time, or its S3 ETag: a new version "
        "of the file is read again."
    )

    def object_id(self):
        digest = hashlib.sha256(f"{self.url} {self.fingerprint}".encode()).hexdigest()[:16]
        return f"geoparquet-{file_source(self.source).slug}-{digest}"

    def output(self):
        return self.marker_target()

    def report_url(self):
        """Where the last run's report (counts and first failures) is written."""
        return self.output_url("report.json")

    def database(self):
        return config.settings().database_url

    def run(self):
        source = file_source(self.source)
        started = time.perf_counter()
        counts = {"rows": 0, "written": 0, "unchanged": 0, "failed": 0}
        failures = {}
        with (
            _collector_paused(),
            files.staged(self.url) as path,
            ThreadPoolExecutor(1) as writer,
        ):
            imported = functools.partial(self.retry, self._imported)
            datasources = {}
            pending = None
            for numbers, batch, skipped in _batches(path, self.url, imported):
                counts["unchanged"] += skipped
                counts["rows"] += skipped + len(numbers)
                self.report_progress(f"{counts['rows']:,} rows read")
                if batch is None:
                    continue
                outcomes = _records(batch, source, numbers)
                # The COPY lines made here too: the writer's thread only waits on the
                # database, so it does not take the GIL from this one.
                loads = self._loads(outcomes, datasources)
                if pending:
                    self._add(counts, pending.result())
                pending = writer.submit(self.retry, self._load, *loads)
                for ref, outcome, _ in outcomes:
                    if not isinstance(outcome, dict):
                        failures[ref] = str(outcome)
            if pending:
                self._add(counts, pending.result())
        counts["failed"] = len(failures)
        report = {
            "source": self.source,
            "file": self.url,
            "status": "PARTIAL" if failures else "COMPLETE",
            **counts,
            "seconds": round(time.perf_counter() - started, 3),
            "failures": dict(sorted(failures.items())[:REPORTED_FAILURES]),
        }
        files.write_bytes(self.report_url(), json.dumps(report).encode())
        if failures:
            ref, reason = next(iter(sorted(failures.items())))
            raise RowsFailed(
                f"{self.url}: {len(failures)} of {counts['rows']} rows failed, e.g. {ref}: {reason}"
            )
        with self.output().transaction():
            pass  # the marker alone: every row's scene is in the catalog

    def _imported(self, ids):
        """Which of ``ids`` are imported already (one query per BATCH_ROWS ids)."""
        ids = [i for i in ids if i]
        kept = [self.written_by, *imports_writers()]
        done = set()
        with db.connect(self.database()) as conn:
            for start in range(0, len(ids), BATCH_ROWS):
                chunk = ids[start : start + BATCH_ROWS]
                done |= imports.imported_products(conn, self.source, chunk, kept)
        return done

    @staticmethod
    def _add(counts, loaded):
        counts["written"] += loaded[0]
        counts["unchanged"] += loaded[1]

    def _loads(self, outcomes, datasources):
        """A batch's COPY lines, the refs of its scenes and its failures, by day; the
        datasources new to ``datasources`` (name: id) are added to it."""
        today = datetime.datetime.now(datetime.UTC).date()
        records, done, failed = [], {}, {}
        for ref, outcome, day in outcomes:
            if isinstance(outcome, dict):
                outcome["scene_metadata"]["import_source"] = self.source
                records.append(outcome)
                done.setdefault(day, []).append(ref)
            else:
                # A row without a readable time is filed under the day it was read.
                failed.setdefault(day or today, {})[ref] = str(outcome)
        new = {r["datasource"] for r in records} - datasources.keys()
        if new:
            datasources.update(self.retry(self._datasources, new))
        return imports.scene_lines(records, datasources, self.written_by), done, failed

    def _datasources(self, names):
        with db.transaction(self.database()) as conn:
            return imports.import_datasources(conn, names)

    def _load(self, lines, done, failed):
        """One batch's scenes, failures and forgotten failures, in one transaction."""
        kept = [self.written_by, *imports_writers()]
        with db.transaction(self.database()) as conn:
            loaded = imports.copy_scene_lines(conn, lines, kept)
            # Apart from the day imports' failures: a file's bad row must not make a day
            # PARTIAL, nor fail the nightly check of its day for ever.
            failures_source = imports.file_failures_source(self.source)
            imports.forget_failures(conn, failures_source, done)
            for day, reasons in failed.items():
                imports.record_failures(conn, failures_source, day, reasons)
        return loaded


def imports_writers():
    """The other writers whose scenes a file leaves as they are when it has the same
    product: the day imports at their current version and the listener."""
    return [f"{ImportBatch.get_task_family()}@v{ImportBatch.version}", imports.LISTENER_WRITTEN_BY]


@contextlib.contextmanager
def _collector_paused():
    """Python's cycle collector off while a file is read. A batch's records are a million
    small dicts and lists that live until the batch is loaded: each batch set off several
    full collections, each walking every object of the process, which cost twice as much as
    making the records (22.8 s against 7.5 s for 100,000 rows). The records hold no cycles;
    whatever cycles the run leaves are collected when it ends."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _batches(path, url, imported):
    """The file's rows not yet imported, BATCH_ROWS rows at a time, with the columns records
    are made from: (their row numbers in the file, the batch, how many rows of it were left
    out as imported). ``imported(ids)`` tells which are imported, once per row group: a
    row group whose rows are all imported is not read beyond its ids (batch None).

    Raises:
        InvalidInput: not a Parquet file, or not one of STAC items.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rf_pipelines.imagery import stac_arrow

    try:
        parquet = pq.ParquetFile(path)
        columns = stac_arrow.columns(parquet)
    except InvalidInput as err:
        raise InvalidInput(f"{url}: {err}") from err
    except (pa.ArrowException, OSError) as err:
        raise InvalidInput(f"{url}: not a readable Parquet file ({err})") from err
    first = 0
    try:
        for group in range(parquet.num_row_groups):
            ids = parquet.read_row_group(group, columns=["id"]).column("id").to_pylist()
            done = imported(ids)
            if ids and all(i in done for i in ids):
                yield [], None, len(ids)
                first += len(ids)
                continue
            for batch in parquet.iter_batches(BATCH_ROWS, row_groups=[group], columns=columns):
                keep = [i not in done for i in batch.column("id").to_pylist()]
                numbers = [first + n for n, kept in enumerate(keep) if kept]
                rows = batch.num_rows
                first += rows
                if len(numbers) < rows:
                    batch = batch.filter(pa.array(keep))
                yield numbers, batch, rows - len(numbers)
    except (pa.ArrowException, OSError) as err:
        raise InvalidInput(f"{url}: row {first} onwards cannot be read ({err})") from err


def _records(batch, source, rows):
    from rf_pipelines.imagery import stac_arrow

    return stac_arrow.batch_records(
        batch, source.datasource, landsat_names=source.landsat_mtl, rows=rows
    )


def read_report(task):
    """The report of the task's last run, or None when it never wrote one."""
    try:
        return json.loads(files.read_bytes(task.report_url()))
    except FileNotFoundError:
        return None
