"""The upload workflow: per file validate, COG, footprints, thumbnails, bands, STAC item,
then register the scene; the upload is COMPLETE when every file is, FAILED otherwise.

Graph for one upload::

    ProcessUpload
      UploadBatch x N                     up to 100 files each, processed in a process pool
        RegisterUploadScene (per file)    run in the batch by ``process_file``, not scheduled
          WriteStacItem
            MakeFootprints, MakeThumbnails, DescribeBands
              ConvertToCog
                ValidateUploadFile

Never one luigi task per file: luigid's scheduler slows down quadratically with the task
count, and 7 tasks per file cost more than the work on a small file. The per-file steps stay
tasks (their outputs, versions and markers are the file's own; each can be run alone with
``rf-pipelines run``), and a batch runs those of its files that are not done.
"""

import contextlib
import functools
import json
import logging
import time
import traceback
import types
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import PurePosixPath

import luigi
import numpy as np
import rasterio
import rasterio.errors

from rf_pipelines import config, ids, operations, processes, runs
from rf_pipelines.catalog import db, markers, scenes, uploads
from rf_pipelines.catalog.statuses import UploadStatus
from rf_pipelines.errors import (
    AlreadyRunning,
    InvalidInput,
    PermanentError,
    RfError,
    TransientError,
    is_transient,
)
from rf_pipelines.imagery import (
    bands,
    cog,
    footprint,
    inspect,
    records,
    sidecars,
    stac,
    thumbnail,
)
from rf_pipelines.targets import UploadStatusTarget, existing, files
from rf_pipelines.tasks.base import RfTask
from rf_pipelines.uploading import check_filename, upload_url

log = logging.getLogger(__name__)


@contextlib.contextmanager
def open_raster(url, label):
    """Opens a local or ``s3://`` raster; a file GDAL cannot read is bad input, not a crash."""
    with files.gdal_env(url):
        try:
            dataset = rasterio.open(url)
        except rasterio.errors.RasterioIOError as err:
            raise InvalidInput(f"{label}: not a raster GDAL can read ({err})") from err
        with dataset:
            yield dataset


def read_json(target):
    with target.open("r") as src:
        return json.loads(src.read())


def write_json(target, value):
    with target.open("w") as out:
        out.write(json.dumps(value, indent=1, default=str).encode())


def _upstream_families(task):
    """The families of every task ``task`` requires, directly or not."""
    found, pending = set(), list(luigi.task.flatten(task.requires()))
    while pending:
        required = pending.pop()
        if required.task_family not in found:
            found.add(required.task_family)
            pending.extend(luigi.task.flatten(required.requires()))
    return found


class UploadFileTask(RfTask):
    """A step on one file of an upload: records the file's status as it starts and fails."""

    workflow = "processed"
    upload_id = luigi.Parameter(description="The upload's id (UUID).")
    filename = luigi.Parameter(description="The file's name within the upload.")

    def object_id(self):
        return f"{uploads.parse_upload_id(self.upload_id)}/{check_filename(self.filename)}"

    def claim(self):
        return operations.Claim("upload", self.upload_id)

    @property
    def label(self):
        return f"{self.filename} (upload {self.upload_id})"

    def source_url(self):
        return upload_url(self.upload_id, self.filename)

    def sidecar_urls(self):
        """URLs of the sidecars copied beside the file (its mask, overviews, .aux.xml,
        world file, .prj), as the upload recorded them."""
        with db.connect(config.settings().database_url) as conn:
            names = uploads.get_file(conn, self.upload_id, self.filename)["sidecars"]
        return [upload_url(self.upload_id, check_filename(name)) for name in names]

    def prj_crs(self, dataset, sidecar_urls):
        """The CRS of the file's ``.prj`` sidecar when the raster has none of its own."""
        prj = [u for u in sidecar_urls if u.lower().endswith(".prj")]
        if dataset.crs is not None or dataset.gcps[0] or not prj:
            return None  # its own CRS, or GCPs with theirs, stand
        text = files.read_bytes(prj[0]).decode("utf-8", errors="replace")
        return sidecars.prj_crs(text, PurePosixPath(prj[0]).name)

    def cog_url(self):
        return ConvertToCog(upload_id=self.upload_id, filename=self.filename).output().path

    def run(self):
        self.retry(self._mark_started)
        self.report_progress(f"{self.task_family}: {self.filename}")
        self.retry(self.work)

    def work(self):
        raise NotImplementedError

    def _mark_started(self):
        with db.transaction(config.settings().database_url) as conn:
            if not uploads.file_started(conn, self.upload_id, self.filename, self.may_clear):
                log.info("%s failed in another step; it stays FAILED", self.label)

    def may_clear(self, failed_step):
        """True when this step is ``failed_step`` run again, or one upstream of it (its
        outputs are being made anew): only then may the file's failure be cleared."""
        if failed_step == self.task_family:
            return True
        try:
            failed = luigi.task_register.Register.get_task_cls(failed_step)
        except luigi.task_register.TaskClassException:
            return True  # a step that no longer exists: its failure is history
        return self.task_family in _upstream_families(
            failed(upload_id=self.upload_id, filename=self.filename)
        )

    def on_failure(self, exception):
        message = super().on_failure(exception)
        if isinstance(exception, AlreadyRunning):
            # Not the file's fault (its scene is being ingested, say): the run ends
            # unfinished, what it claimed is released, and a later run does it.
            log.warning("%s: %s; left for a later run", self.label, exception)
            return message
        short = str(exception).strip().splitlines()[0] if str(exception).strip() else ""

        def record():
            with db.transaction(config.settings().database_url) as conn:
                uploads.file_failed(
                    conn,
                    self.upload_id,
                    self.filename,
                    f"{self.task_family}: {type(exception).__name__}: {short}",
                    self.task_family,
                )

        try:
            self.retry(record)  # a blip (a deadlock, a restart) must not lose the failure
        except RfError as err:
            log.error("could not record the failure of %s: %s", self.label, err)
        return message


class ValidateUploadFile(UploadFileTask):
    """Checks the file is a readable, georeferenced GeoTIFF within the size limits."""

    def output(self):
        return self.file_target("validation.json")

    def work(self):
        url = self.source_url()
        if not existing([url]):
            raise InvalidInput(f"{self.label}: the file is missing from {url}")
        size = files.object_size(url)
        if size == 0:
            raise InvalidInput(f"{self.filename}: the file is empty (0 bytes)")
        beside = self.sidecar_urls()
        with open_raster(url, self.filename) as dataset:
            report = inspect.inspect_raster(
                dataset,
                self.filename,
                config.settings().max_upload_pixels,
                crs=self.prj_crs(dataset, beside),
            )
        write_json(self.output(), {**report, "size_bytes": size, "written_by": self.written_by})


class ConvertToCog(UploadFileTask):
    """Writes the file as a Cloud Optimized GeoTIFF, checked with rio-cogeo's validator."""

    version = 1

    def requires(self):
        return ValidateUploadFile(upload_id=self.upload_id, filename=self.filename)

    def output(self):
        return self.file_target(f"{PurePosixPath(self.filename).stem}.tif")

    def work(self):
        beside = self.sidecar_urls()
        with (
            files.room(self.room_needed(beside), f"COG of {self.filename}"),
            files.staged(self.source_url(), beside) as local,
            rasterio.open(local) as dataset,
            files.writing(self.output().path, suffix=".tif") as tmp,
        ):
            self.report_progress(f"COG of {self.filename}: writing tiles and overviews", 10)
            crs = self.prj_crs(dataset, beside)
            cog.write_cog(dataset, tmp, threads=processes.gdal_threads(), crs=crs)
            self.report_progress(f"COG of {self.filename}: validating", 80)
            cog.check_cog(tmp, self.filename)
        self.report_progress(f"COG of {self.filename}: published", 100)

    def room_needed(self, beside):
        """{local folder: bytes} this conversion writes at most: the source and its
        sidecars when they are downloaded from S3, and the COG (uncompressed, with its
        overviews, and the temporary overviews GDAL's COG driver writes beside it) where it
        is written before it is published."""
        report = read_json(self.input())
        itemsize = max(np.dtype(t).itemsize for t in report["dtypes"])
        # One band more for a mask or an alpha band; a grid warped north-up (GCPs, rotated)
        # may cover up to twice the pixels.
        pixels = report["width"] * report["height"]
        if report.get("georeferencing") == "gcps" or report.get("rotated"):
            pixels *= 2
        raw = pixels * (report["count"] + 1) * itemsize
        needs = {}
        if files.is_s3(self.source_url()):
            staged = report["size_bytes"] + sum(files.object_size(u) for u in beside)
            needs[files.scratch_dir()] = staged
        # The COG is written in the scratch folder for S3, beside its place on a local data
        # root (whose reservations are kept at the root, one ledger for all its files).
        out = self.output().path
        folder = files.scratch_dir() if files.is_s3(out) else config.settings().data_root
        needs[folder] = needs.get(folder, 0) + raw * 5 // 3
        return needs


class _FromCog(UploadFileTask):
    def requires(self):
        return ConvertToCog(upload_id=self.upload_id, filename=self.filename)


class MakeFootprints(_FromCog):
    """Data footprint (valid pixels) and tile footprint (bounds) in EPSG:4326 and 3857."""

    def output(self):
        return self.file_target("footprints.json")

    def work(self):
        with open_raster(self.input().path, self.filename) as dataset:
            result = {
                "data": footprint.data_footprints(dataset),
                "tile": footprint.tile_footprints(dataset),
            }
        write_json(self.output(), result)


class MakeThumbnails(_FromCog):
    """SMALL (256 px) and LARGE (1024 px) PNG thumbnails."""

    def output(self):
        return {size: self.file_target(f"thumbnail_{size}.png") for size in thumbnail.SIZES}

    def work(self):
        with open_raster(self.input().path, self.filename) as dataset:
            for size, pixels in thumbnail.SIZES.items():
                png, _width, _height = thumbnail.render(dataset, pixels)
                with self.output()[size].open("w") as out:
                    out.write(png)


class DescribeBands(_FromCog):
    """Band names, types, nodata, resolution, approximate statistics and histograms."""

    def output(self):
        return self.file_target("bands.json")

    def work(self):
        with open_raster(self.input().path, self.filename) as dataset:
            write_json(self.output(), bands.band_metadata(dataset))


class WriteStacItem(UploadFileTask):
    """The STAC item of the COG, with projection, raster and eo extensions."""

    def requires(self):
        params = {"upload_id": self.upload_id, "filename": self.filename}
        return {
            "cog": ConvertToCog(**params),
            "footprints": MakeFootprints(**params),
            "thumbnails": MakeThumbnails(**params),
            "bands": DescribeBands(**params),
        }

    def output(self):
        return self.file_target("item.json")

    def scene_id(self):
        return ids.scene_id_for_upload(self.upload_id, self.filename)

    def work(self):
        inputs = self.input()
        with open_raster(inputs["cog"].path, self.filename) as dataset:
            grid = records.grid_info(dataset)
            acquired = records.acquisition_time(dataset) or self._upload_time()
        item = stac.build_item(
            self.scene_id(),
            acquired,
            grid,
            read_json(inputs["footprints"]),
            read_json(inputs["bands"]),
            inputs["cog"].path,
            inputs["thumbnails"]["LARGE"].path,
        )
        write_json(self.output(), item)

    def _upload_time(self):
        return _upload_created_at(config.settings().database_url, self.upload_id)


@functools.lru_cache(maxsize=64)
def _upload_created_at(database_url, upload_id):
    """When the upload was created (it never changes): read once per process and upload."""
    with db.connect(database_url) as conn:
        return uploads.get_upload(conn, upload_id)["created_at"]


class RegisterUploadScene(UploadFileTask):
    """Registers the scene, image, bands and thumbnails rows, links the project, and marks
    the file SUCCESS, all in one transaction with this step's marker."""

    def requires(self):
        item = WriteStacItem(upload_id=self.upload_id, filename=self.filename)
        return {"item": item, **item.requires()}

    def output(self):
        return self.marker_target()

    def work(self):
        inputs = self.input()
        scene_id = ids.scene_id_for_upload(self.upload_id, self.filename)
        with open_raster(inputs["cog"].path, self.filename) as dataset:
            grid = records.grid_info(dataset)
            thumbs = {
                size: {"url": inputs["thumbnails"][size].path, "width": cols, "height": rows}
                for size, (cols, rows) in thumbnail.sizes(dataset).items()
            }
            acquired = records.acquisition_time(dataset)
        urls = {
            "cog": inputs["cog"].path,
            "stac_item": inputs["item"].path,
            "footprints": inputs["footprints"].path,
        }
        with self.output().transaction() as conn:
            # The upload's row lock first: the scene rows take a key-share lock on it and
            # settling the upload (at the end) its update lock, so two files registering at
            # once (two hosts' batches) would each wait for the other: a deadlock.
            upload = uploads.get_upload(conn, self.upload_id, lock=True)
            scene, images, thumbnail_rows = records.upload_scene_records(
                ids={
                    "scene_id": scene_id,
                    "image_id": ids.stable_id("image", scene_id),
                    "datasource_id": upload["datasource_id"],
                    "upload_id": upload["id"],
                },
                file={
                    "filename": self.filename,
                    "owner": upload["owner"],
                    "size_bytes": files.object_size(inputs["cog"].path),
                    "acquired": acquired,
                },
                grid=grid,
                footprints=read_json(inputs["footprints"]),
                bands=read_json(inputs["bands"]),
                thumbnails=thumbs,
                urls=urls,
                written_by=self.written_by,
            )
            scenes.register_scene(conn, scene, images, thumbnail_rows, upload["project_id"])
            outputs = {**urls, "thumbnails": {s: t["url"] for s, t in thumbs.items()}}
            uploads.file_succeeded(conn, self.upload_id, self.filename, scene_id, outputs)


def process_file(upload_id, filename, batch=None):
    """Runs the steps of one file that are not done yet, in order, in this process: what
    luigi would run of ``RegisterUploadScene(upload_id, filename)``, without a task each.
    Each step writes its own outputs as it would as a task; the file is marked started once,
    and a failed step records the file's failure with its step and reason, in the catalog
    and in the run's record of failures.

    Args:
        batch: ``(task_id, log URL)`` of the batch running the file, for the run's record.

    Returns:
        None when the file is registered, else ``(step family, outcome, one-line reason)``
        with outcome ``"permanent"``, ``"transient"`` or ``"already_running"``.
    """
    final = RegisterUploadScene(upload_id=upload_id, filename=filename)
    try:
        steps = final.retry(_steps_to_run, final)
    except Exception as err:  # noqa: BLE001 - recorded as the failure of the last step
        return _failed(final, err, batch)
    try:
        final.retry(_mark_started, steps)
    except Exception as err:  # noqa: BLE001 - recorded as the failure of the first step
        return _failed(steps[0], err, batch)
    # One GDAL environment for all the steps: each rasterio call then reuses its session.
    with files.gdal_env(config.settings().data_root):
        for step in steps:
            try:
                step.report_progress(f"{step.task_family}: {filename}")
                step.retry(step.work)
            except Exception as err:  # noqa: BLE001 - every failure is the file's, recorded
                return _failed(step, err, batch)
    return None


def _steps_to_run(final):
    """``final`` and the steps upstream of it whose outputs are missing, each after the
    steps it reads; a step whose outputs exist is not run, nor are those upstream of it
    (as luigi would schedule them). ``final`` is known not to be done."""
    order, seen = [], set()

    def visit(step, done=None):
        if step.task_id in seen:
            return
        seen.add(step.task_id)
        if done is None:
            # luigi's own check, not the step's complete(): a failure here is the file's,
            # retried and recorded once by process_file, not a scheduling failure.
            done = all(target.exists() for target in luigi.task.flatten(step.output()))
        if done:
            return
        for required in luigi.task.flatten(step.requires()):
            visit(required)
        order.append(step)

    visit(final, done=False)
    return order


def _mark_started(steps):
    first = steps[0]
    with db.transaction(config.settings().database_url) as conn:
        may_clear = lambda failed: any(s.may_clear(failed) for s in steps)  # noqa: E731
        if not uploads.file_started(conn, first.upload_id, first.filename, may_clear):
            log.info("%s failed in another step; it stays FAILED", first.label)


def _failed(step, err, batch):
    step.on_failure(err)
    reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if isinstance(err, AlreadyRunning):
        return step.task_family, "already_running", f"{type(err).__name__}: {reason}"
    trace = "".join(traceback.format_exception(err))
    log.error("%s failed in %s: %s", step.label, step.task_family, trace)
    if batch:
        runs.record_failure(step, err, "run", log=batch[1], within=batch[0])
    kind = "transient" if is_transient(err) else "permanent"
    return step.task_family, kind, f"{type(err).__name__}: {reason}"


# Files per batch, for uploads of up to BATCH_FILES * MAX_BATCHES files; a larger upload has
# larger batches, so that luigid never holds more than MAX_BATCHES of them (its scheduler
# slows down quadratically with the task count).
BATCH_FILES = 100
MAX_BATCHES = 100
REJECTED = "RejectUploadFile"  # the step a file whose name no step may use fails in
DIED = "ProcessDied"  # the "step" of a file whose process died under it (not a task)
PROGRESS_EVERY_S = 1.0


def batch_size(count):
    """Files per batch of an upload of ``count`` files."""
    return max(BATCH_FILES, -(-count // MAX_BATCHES))


class FilesFailed(InvalidInput):
    """Some files of a batch failed, each recorded with its step and reason."""

    per_file = True  # the run reports the files' failures, not this one


class ProcessDied(PermanentError):
    """The process working on a file died under it, twice (once in the pool, once alone)."""


class FilesUnfinished(TransientError):
    """A batch stopped before its files were done (a service was away); the next run does
    what is left."""


class UploadBatch(RfTask):
    """Processes a batch of an upload's files (by name): per file, the steps not done yet,
    from ValidateUploadFile to RegisterUploadScene, in a pool of processes (both cores). Each
    file keeps its own outputs, marker and status, so one bad file fails alone and a rerun
    redoes only what is missing. Done when every file of the batch has its marker."""

    workflow = "processed"
    upload_id = luigi.Parameter(description="The upload's id (UUID).")
    batch = luigi.IntParameter(description="Index of the batch among the upload's files.")

    def object_id(self):
        return f"{uploads.parse_upload_id(self.upload_id)}/batch-{self.batch}"

    def claim(self):
        return operations.Claim("upload", self.upload_id)

    def upstream(self):
        # The steps of any one file: the lineage does not depend on the upload's files.
        return [RegisterUploadScene(upload_id=self.upload_id, filename="lineage")]

    def filenames(self):
        """This batch's files (the upload's files by name, sliced by ``batch_size``) and the
        upload's file count; two queries, whatever the count."""
        with db.connect(config.settings().database_url) as conn:
            total = uploads.count_files(conn, self.upload_id)
            size = batch_size(total)
            names = uploads.file_names(conn, self.upload_id, self.batch * size, size)
        return names, total

    def complete(self):
        names, _ = self.filenames()
        return not self._pending(names)

    def _pending(self, names):
        """The names whose RegisterUploadScene marker is missing (one query); a name no step
        may use is always pending."""
        marker_ids = {}
        for name in names:
            with contextlib.suppress(InvalidInput):
                marker_ids[name] = register_marker_id(self.upload_id, check_filename(name))
        with db.connect(config.settings().database_url) as conn:
            done = markers.existing(conn, marker_ids.values())
        return [name for name in names if marker_ids.get(name) not in done]

    def run(self):
        names, total = self.retry(self.filenames)
        batches = -(-total // batch_size(total))
        self.where = f"upload {self.upload_id} batch {self.batch + 1}/{batches}"
        self._batch = (self.task_id, runs.log_url(self))
        pending = self.retry(self._pending, names)
        failures = self.retry(self._reject_bad_names, pending)
        pending = [n for n in pending if n not in failures]
        self.counts = {"done": len(names) - len(pending) - len(failures), "of": len(names)}
        self._report(failures, force=True)
        unfinished = None
        outcomes = self._outcomes(pending)
        for name, outcome in outcomes:
            if outcome is None:
                self.counts["done"] += 1
            elif outcome[1] == "permanent":
                failures[name] = f"{outcome[0]}: {outcome[2]}"
            else:
                # A service stayed away, or the scene is being ingested: the files not
                # started yet are left for the next run.
                unfinished = (name, outcome)
                break
            self._report(failures)
        outcomes.close()
        self._report(failures, force=True)
        self._raise(failures, unfinished)

    def _outcomes(self, names):
        """Yields ``(name, process_file's outcome)`` as files finish, from a pool of
        processes (one file alone runs here, with all of GDAL's threads). Closing the
        generator cancels the files not started; those started finish first.

        When a process dies (GDAL crashed on a file, the kernel killed it for memory), the
        pool is lost with the files it held: those not finished are then run one by one,
        each in a process of its own, and the one whose process dies again fails alone."""
        if len(names) == 1:
            yield names[0], process_file(self.upload_id, names[0], self._batch)
            return
        left = list(names)
        workers = min(config.settings().upload_processes, len(names))
        with processes.pool(workers) as pool:
            futures = {
                pool.submit(processes.call, process_file, self.upload_id, name, self._batch): name
                for name in names
            }
            try:
                for future in as_completed(futures):
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        break  # every future left fails alike: run them one by one
                    except Exception as err:  # noqa: BLE001 - the file's, left for a rerun
                        outcome = ("", "transient", f"{type(err).__name__}: {err}")
                    left.remove(futures[future])
                    yield futures[future], outcome
            finally:
                for future in futures:
                    future.cancel()
        for name in left:
            yield name, self._alone(name)

    def _alone(self, name):
        """``process_file`` for one file in a process of its own; a process that dies fails
        the file (its step unknown: ``DIED``), so that the others go on."""
        try:
            with processes.pool(1) as pool:
                return pool.submit(
                    processes.call, process_file, self.upload_id, name, self._batch
                ).result()
        except BrokenProcessPool:
            error = ProcessDied(
                f"{name}: the process working on it died (a crash in GDAL, or out of memory)"
            )
            log.error("%s (upload %s): %s", name, self.upload_id, error)
            self.retry(self._record_died, name, error)
            return DIED, "permanent", f"{type(error).__name__}: {error}"

    def _record_died(self, name, error):
        with db.transaction(config.settings().database_url) as conn:
            reason = f"{DIED}: {type(error).__name__}: {error}"
            uploads.file_failed(conn, self.upload_id, name, reason, DIED)
        step = types.SimpleNamespace(
            task_id=f"{DIED}({self.upload_id}, {name})",
            task_family=DIED,
            to_str_params=lambda **_: {"upload_id": self.upload_id, "filename": name},
        )
        runs.record_failure(step, error, "run", log=self._batch[1], within=self._batch[0])

    def _reject_bad_names(self, names):
        """Records FAILED each name no step may use as a path; returns {name: reason}."""
        rejected = {}
        for name in names:
            try:
                check_filename(name)
            except InvalidInput as err:
                rejected[name] = f"{REJECTED}: {type(err).__name__}: {err}"
        if rejected:
            with db.transaction(config.settings().database_url) as conn:
                for name, reason in rejected.items():
                    uploads.file_started(conn, self.upload_id, name)
                    uploads.file_failed(conn, self.upload_id, name, reason, REJECTED)
        return rejected

    def _report(self, failures, force=False):
        """Shows the batch's progress on luigid's page, at most once a second."""
        now = time.monotonic()
        if not force and now - getattr(self, "_reported", 0) < PROGRESS_EVERY_S:
            return
        self._reported = now
        done, of = self.counts["done"], self.counts["of"]
        failed = f", {len(failures)} failed" if failures else ""
        self.report_progress(
            f"{self.where}: {done} of {of} files done{failed}",
            100 * (done + len(failures)) / of if of else 100,
        )

    def _raise(self, failures, unfinished):
        if unfinished:
            name, (step, kind, reason) = unfinished
            error = AlreadyRunning if kind == "already_running" else FilesUnfinished
            why = ": ".join(part for part in (step, reason) if part)
            raise error(
                f"{self.where}: stopped with files left to do, at {name}: {why}; "
                "run the same command again"
            )
        if failures:
            name, reason = next(iter(failures.items()))
            raise FilesFailed(
                f"{self.where}: {len(failures)} of {self.counts['of']} files failed, "
                f"e.g. {name}: {reason} (upload show lists each)"
            )


def register_marker_id(upload_id, filename):
    """The marker id of ``RegisterUploadScene(upload_id, filename)``, without making the task
    (luigi keeps every task it makes for the life of the process)."""
    template = RegisterUploadScene(upload_id=upload_id, filename="lineage")
    task_id = luigi.task.task_id_str(
        RegisterUploadScene.get_task_family(), {"filename": filename, "upload_id": upload_id}
    )
    return template.marker_target().marker_id.replace(template.task_id, task_id, 1)


class ProcessUpload(RfTask):
    """Processes every file of an upload in batches; complete when the upload is COMPLETE,
    processed by the steps' current versions (``lineage``), so bumping a step reprocesses
    the upload."""

    upload_id = luigi.Parameter(description="The upload's id (UUID).")

    def requires(self):
        """The upload's batches; reads the catalog, writes nothing.

        Raises:
            NotFound, IllegalTransition: no such upload, or one not ready to process.
        """
        with db.connect(config.settings().database_url) as conn:
            uploads.check_processable(uploads.get_upload(conn, self.upload_id))
            count = uploads.count_files(conn, self.upload_id)
        batches = -(-count // batch_size(count))
        return [UploadBatch(upload_id=self.upload_id, batch=i) for i in range(batches)]

    def claim(self):
        return operations.Claim("upload", self.upload_id)

    def upstream(self):
        return [UploadBatch(upload_id=self.upload_id, batch=0)]

    def output(self):
        return UploadStatusTarget(self.upload_id, UploadStatus.COMPLETE, self.lineage)

    def run(self):
        with db.transaction(config.settings().database_url) as conn:
            status = uploads.settle(conn, self.upload_id)
            if status == UploadStatus.COMPLETE:
                uploads.set_processed_by(conn, self.upload_id, self.lineage)
        if status != UploadStatus.COMPLETE:
            raise InvalidInput(f"upload {self.upload_id} is {status}, not COMPLETE")
