"""The upload workflow: per file validate, COG, footprints, thumbnails, bands, STAC item,
then register the scene; the upload is COMPLETE when every file is, FAILED otherwise.

Graph for one upload::

    ProcessUpload
      RegisterUploadScene (one per file)
        WriteStacItem
          MakeFootprints, MakeThumbnails, DescribeBands
            ConvertToCog
              ValidateUploadFile
"""

import contextlib
import json
import logging
from pathlib import PurePosixPath

import luigi
import rasterio
import rasterio.errors

from rf_pipelines import config, ids, operations
from rf_pipelines.catalog import db, scenes, uploads
from rf_pipelines.catalog.statuses import UploadStatus
from rf_pipelines.errors import AlreadyRunning, InvalidInput, RfError
from rf_pipelines.imagery import bands, cog, footprint, inspect, records, stac, thumbnail
from rf_pipelines.targets import UploadStatusTarget, existing, files
from rf_pipelines.tasks.base import RfTask
from rf_pipelines.uploading import check_filename, upload_url

log = logging.getLogger(__name__)


@contextlib.contextmanager
def open_raster(url, label):
    """Opens a local or ``s3://`` raster; a file GDAL cannot read is bad input, not a crash."""
    with rasterio.Env(**files.gdal_options(url)):
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
        try:
            with db.transaction(config.settings().database_url) as conn:
                uploads.file_failed(
                    conn,
                    self.upload_id,
                    self.filename,
                    f"{self.task_family}: {type(exception).__name__}: {short}",
                    self.task_family,
                )
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
        with open_raster(url, self.filename) as dataset:
            report = inspect.inspect_raster(
                dataset, self.filename, config.settings().max_upload_pixels
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
        with files.staged(self.source_url()) as local, rasterio.open(local) as dataset:
            with files.writing(self.output().path, suffix=".tif") as tmp:
                self.report_progress(f"COG of {self.filename}: writing tiles and overviews", 10)
                cog.write_cog(dataset, tmp)
                self.report_progress(f"COG of {self.filename}: validating", 80)
                cog.check_cog(tmp, self.filename)
            self.report_progress(f"COG of {self.filename}: published", 100)


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
        with db.connect(config.settings().database_url) as conn:
            return uploads.get_upload(conn, self.upload_id)["created_at"]


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
            upload = uploads.get_upload(conn, self.upload_id)
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


class RejectUploadFile(RfTask):
    """A file whose name no task may use as a path: records it FAILED with the reason and
    fails, so the rest of the upload is processed and the upload ends FAILED naming it."""

    upload_id = luigi.Parameter(description="The upload's id (UUID).")
    filename = luigi.Parameter(description="The file's name as the upload recorded it.")

    def complete(self):
        return False  # checking the name again is the work; it never succeeds

    def object_id(self):
        return str(uploads.parse_upload_id(self.upload_id))

    def claim(self):
        return operations.Claim("upload", self.upload_id)

    def run(self):
        try:
            check_filename(self.filename)
        except InvalidInput as err:
            reason = f"{self.task_family}: {type(err).__name__}: {err}"
        else:
            reason = f"{self.task_family}: the name changed since the upload was listed"
        with db.transaction(config.settings().database_url) as conn:
            uploads.file_started(conn, self.upload_id, self.filename)
            uploads.file_failed(conn, self.upload_id, self.filename, reason, self.task_family)
        raise InvalidInput(f"{self.filename!r} (upload {self.upload_id}): {reason}")


class ProcessUpload(RfTask):
    """Processes every file of an upload; complete when the upload is COMPLETE, processed by
    the steps' current versions (``lineage``), so bumping a step reprocesses the upload."""

    upload_id = luigi.Parameter(description="The upload's id (UUID).")

    def requires(self):
        """One chain per file; reads the catalog, writes nothing.

        Raises:
            NotFound, IllegalTransition: no such upload, or one not ready to process.
        """
        with db.connect(config.settings().database_url) as conn:
            uploads.check_processable(uploads.get_upload(conn, self.upload_id))
            names = [f["filename"] for f in uploads.list_files(conn, self.upload_id)]
        return [self._chain(name) for name in names]

    def _chain(self, name):
        try:
            check_filename(name)
        except InvalidInput:
            return RejectUploadFile(upload_id=self.upload_id, filename=name)
        return RegisterUploadScene(upload_id=self.upload_id, filename=name)

    def claim(self):
        return operations.Claim("upload", self.upload_id)

    def upstream(self):
        # The steps of any one file: the lineage does not depend on the upload's files.
        return [RegisterUploadScene(upload_id=self.upload_id, filename="lineage")]

    def output(self):
        return UploadStatusTarget(self.upload_id, UploadStatus.COMPLETE, self.lineage)

    def run(self):
        with db.transaction(config.settings().database_url) as conn:
            status = uploads.settle(conn, self.upload_id)
            if status == UploadStatus.COMPLETE:
                uploads.set_processed_by(conn, self.upload_id, self.lineage)
        if status != UploadStatus.COMPLETE:
            raise InvalidInput(f"upload {self.upload_id} is {status}, not COMPLETE")
