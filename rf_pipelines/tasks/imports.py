"""Scheduled imports: discover a day's scenes into a manifest, import them in batches.

Graph for one source and day::

    ImportDay(source, day, run_day)        the day COMPLETE, or failed as PARTIAL
      ImportBatch x N (dynamic)            up to BATCH_SIZE scenes, concurrent reads, one marker
        DiscoverDay(source, day, run_day)  manifest.json of references not yet imported

Never one task per scene: luigi's scheduler slows down quadratically with the task count.
``run_day`` is the day the check ran, so re-checking a past day (the look-back for late
scenes) discovers afresh, and only references whose scene is not yet imported are kept.
"""

import functools
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import luigi

from rf_pipelines import config, operations, sources
from rf_pipelines.catalog import db, imports
from rf_pipelines.errors import ConfigError, PermanentError, TransientError, is_transient
from rf_pipelines.tasks.base import RfTask

BATCH_SIZE = 500


class DayFailed(PermanentError):
    """Some scenes of a day could not be imported; the others are."""


class DayUnread(TransientError):
    """Every failed scene of a day could not be read (the store failed); a rerun reads them."""


class DayRefused(ConfigError):
    """The store refused to let this worker read scenes of a day: a setting is wrong."""


class _DayTask(RfTask):
    workflow = "imports"
    source = luigi.Parameter(description="Source name, e.g. sentinel2.")
    day = luigi.DateParameter(description="Acquisition day to import.")
    run_day = luigi.DateParameter(description="Day of this check (a look-back re-checks).")

    def object_id(self):
        slug = sources.get_source(self.source).slug
        return f"{slug}/{self.day:%Y-%m-%d}/checked-{self.run_day:%Y-%m-%d}"

    def database(self):
        return config.settings().database_url

    def claim(self):
        return operations.Claim("day", f"{self.source} {self.day:%Y-%m-%d}")


class DiscoverDay(_DayTask):
    """Lists the day's references and writes those not yet imported to manifest.json."""

    def output(self):
        return self.file_target("manifest.json")

    def run(self):
        source = sources.get_source(self.source)
        done = functools.partial(imported_products, source, self.database())
        refs = self.retry(source.discover, self.day, done)
        refs = self.retry(not_yet_imported, source, refs, self.database())
        # The day's row first, the manifest last: a kill or an outage in between leaves no
        # manifest, so the rerun discovers again instead of finding a day without its row.
        self.retry(self._start_day, len(refs))
        with self.output().open("w") as out:
            out.write(
                json.dumps({"refs": refs, "discovered_at": datetime.now(UTC)}, default=str).encode()
            )
        self.report_progress(f"{len(refs)} new scenes", 100)

    def _start_day(self, count):
        source = sources.get_source(self.source)
        with db.transaction(self.database()) as conn:
            imports.start_day(conn, self.source, self.day, count, self.output().path)
            imports.clear_imported_failures(
                conn, self.source, self.day, source.product_id, _writers()
            )


class _FromManifest(_DayTask):
    """A step on the day's manifest, done when its marker row exists."""

    def requires(self):
        return DiscoverDay(source=self.source, day=self.day, run_day=self.run_day)

    def output(self):
        return self.marker_target()

    def manifest_refs(self):
        with self.input().open("r") as src:
            return json.loads(src.read())["refs"]


class ImportBatch(_FromManifest):
    """Reads up to BATCH_SIZE references concurrently and upserts their scenes in one
    transaction with this batch's marker; failed scenes are recorded with their reason."""

    batch = luigi.IntParameter(description="Index of the batch in the manifest.")

    def run(self):
        manifest = self.manifest_refs()
        batches = (len(manifest) + BATCH_SIZE - 1) // BATCH_SIZE
        entries = manifest[self.batch * BATCH_SIZE : (self.batch + 1) * BATCH_SIZE]
        where = f"batch {self.batch + 1}/{batches}"
        source = sources.get_source(self.source)
        # On a rerun after a partial failure, only the scenes still missing are read again.
        self.retry(imports.refresh_statistics, self.database())
        entries = self.retry(not_yet_imported, source, entries, self.database())
        self.report_progress(f"{where}: reading {len(entries):,} scenes", 10)
        failures = self.retry(self._import, source, entries)
        done = min(len(manifest), (self.batch + 1) * BATCH_SIZE)
        self.report_progress(f"{where}: {done:,} of {len(manifest):,} scenes of the day", 100)
        if failures:
            first = next(iter(failures.items()))
            errors = list(failures.values())
            if all(map(is_transient, errors)):
                kind = DayUnread
            elif any(isinstance(e, ConfigError) for e in errors):
                kind = DayRefused
            else:
                kind = DayFailed
            raise kind(
                f"{self.source} {self.day}: {len(failures)} of {len(entries)} scenes in batch "
                f"{self.batch} failed, e.g. {first[0]}: {first[1]}"
            )

    def _import(self, source, entries):
        """Reads the entries chunk by chunk and upserts each chunk's scenes while the next is
        read, all in one transaction that ends with this batch's marker, or with the failed
        scenes recorded (no marker) when any failed. Returns {label: error} of failures."""
        failures = {}
        with db.transaction(self.database()) as conn, ThreadPoolExecutor(1) as writer:
            pending = None
            for chunk, outcomes in source.read_chunks(entries):
                records = []
                for entry, outcome in zip(chunk, outcomes, strict=True):
                    if isinstance(outcome, dict):
                        outcome["scene_metadata"]["import_source"] = self.source
                        records.append(outcome)
                    else:
                        failures[source.label(entry)] = outcome
                if pending:
                    pending.result()
                pending = writer.submit(imports.upsert_scenes, conn, records, self.written_by)
            if pending:
                pending.result()
            done = [source.label(e) for e in entries if source.label(e) not in failures]
            imports.clear_failures(conn, self.source, self.day, done)
            if failures:
                reasons = {label: str(error) for label, error in failures.items()}
                imports.record_failures(conn, self.source, self.day, reasons)
            else:
                self.output().write(conn)
        return failures


def not_yet_imported(source, entries, database_url):
    """The entries whose product is not in the catalog yet, as this version of ImportBatch
    writes it (one query); entries whose product cannot be told without reading them are
    kept. A re-published product (new id, same scene) is new, so it updates its scene; so is
    one an older ImportBatch wrote, so bumping ImportBatch's version imports it again (what
    the listener stored counts as imported)."""
    products = [source.product_id(e) for e in entries]
    done = imported_products(source, database_url, [p for p in products if p])
    return [e for e, p in zip(entries, products, strict=True) if p is None or p not in done]


def imported_products(source, database_url, products):
    """The subset of ``products`` imported from ``source`` as this version of ImportBatch
    writes them, or by the listener (one query)."""
    with db.connect(database_url) as conn:
        return imports.imported_products(conn, source.name, products, _writers())


def _writers():
    """The writers whose scenes count as imported: this version of ImportBatch and the
    listener."""
    return [f"{ImportBatch.get_task_family()}@v{ImportBatch.version}", imports.LISTENER_WRITTEN_BY]


class ImportDay(_FromManifest):
    """Imports every scene discovered for the day; COMPLETE, or a failure naming the scenes."""

    def upstream(self):
        # The batches are dynamic requirements: the first stands for all in the lineage.
        params = {"source": self.source, "day": self.day, "run_day": self.run_day}
        return [DiscoverDay(**params), ImportBatch(**params, batch=0)]

    def run(self):
        count = len(self.manifest_refs())
        batches = [
            ImportBatch(source=self.source, day=self.day, run_day=self.run_day, batch=i)
            for i in range((count + BATCH_SIZE - 1) // BATCH_SIZE)
        ]
        yield batches
        status = self.retry(self._finish_day, count)
        if status != "COMPLETE":
            raise DayFailed(f"{self.source} {self.day}: {status}")
        with self.output().transaction():
            pass  # the marker alone: this check of the day is done

    def _finish_day(self, count):
        with db.transaction(self.database()) as conn:
            status = imports.finish_day(conn, self.source, self.day)
            if status is None:
                # A manifest without its day row (written before the row came first): the
                # manifest is the record of this check, so the row is made from it.
                imports.start_day(conn, self.source, self.day, count, self.input().path)
                status = imports.finish_day(conn, self.source, self.day)
        return status
