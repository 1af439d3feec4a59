"""Creating uploads: user files copied into ``uploads/{upload_id}/`` and recorded as UPLOADED."""

import os
import posixpath
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rf_pipelines import config, ids
from rf_pipelines.catalog import datasources, db, markers, projects, scenes, uploads
from rf_pipelines.catalog.statuses import UploadStatus
from rf_pipelines.errors import AlreadyRunning, InvalidInput
from rf_pipelines.imagery import sidecars
from rf_pipelines.targets import existing, files

TIFF_SUFFIXES = (".tif", ".tiff")
DEFAULT_DATASOURCE = "User uploads"
MAX_NAME_LENGTH = 200


def check_filename(name):
    """Returns ``name`` if it is a plain file name; file names are untrusted input.

    Raises:
        InvalidInput: empty, a path (``/``, ``\\``, ``..``), hidden, too long or with NUL.
    """
    if (
        not name
        or name in (".", "..")
        or name.startswith(".")
        or any(c in name for c in "/\\\x00")
        or len(name) > MAX_NAME_LENGTH
    ):
        raise InvalidInput(f"file name {name!r} is not a plain file name")
    return name


def upload_url(upload_id, filename):
    """Where one of an upload's original files lives under the data root."""
    upload_id = uploads.parse_upload_id(upload_id)
    return files.join(
        config.settings().data_root, "uploads", str(upload_id), check_filename(filename)
    )


def processed_url(upload_id, filename):
    """The folder of every output made from one upload file."""
    upload_id = uploads.parse_upload_id(upload_id)
    return files.join(
        config.settings().data_root, "processed", str(upload_id), check_filename(filename)
    )


@dataclass
class SourceFile:
    """One raster of an upload, with the GDAL sidecars that travel with it."""

    url: str
    name: str
    sidecars: list = field(default_factory=list)  # (url, name) pairs

    def copies(self):
        """(source URL, name in the upload) of the raster and of each sidecar."""
        return [(self.url, self.name), *self.sidecars]


def collect_sources(sources):
    """Expands the user's sources into rasters, each with its sidecars (``imagery.sidecars``:
    external mask, overviews, PAM .aux.xml, world file and .prj).

    Args:
        sources: local files, local folders or ``s3://`` prefixes (TIFFs under them).

    Returns:
        ``([SourceFile], notes)``: notes name each sidecar whose raster is not in the upload
        (it is left out).

    Raises:
        InvalidInput: a missing file, a prefix or folder without TIFFs, a raster or sidecar
            name that is not a plain file name, or two files with the same name (each
            becomes a scene named after its file).
    """
    found, orphans = [], []
    for source in sources:
        if _is_s3_object(source):
            rasters, lost = {source: _sidecars_beside(source)}, []
        elif files.is_s3(source) or os.path.isdir(source):
            listed = files.list_files(source, TIFF_SUFFIXES + sidecars.SUFFIXES)
            rasters, lost = sidecars.match(listed, _is_tiff)
            if not rasters:
                raise InvalidInput(f"{source}: no .tif or .tiff files under this prefix")
        elif os.path.isfile(source):
            path = os.path.abspath(source)
            rasters, lost = {path: _sidecars_beside(path)}, []
        else:
            raise InvalidInput(f"{source}: no such file, folder or s3:// prefix")
        orphans.extend(lost)
        for url, extra in rasters.items():
            name = check_filename(posixpath.basename(url))
            found.append(SourceFile(url, name, _sidecar_copies(name, extra)))
    seen = {}
    for url, name in (copy for f in found for copy in f.copies()):
        if seen.get(name, url) != url:
            raise InvalidInput(
                f"two files are named {name!r} ({seen[name]} and {url}); each file of an "
                "upload becomes a scene named after it, so rename one"
            )
        seen[name] = url
    notes = [
        f"{posixpath.basename(url)}: a sidecar whose raster is not in the upload; ignored ({url})"
        for url in orphans
    ]
    return found, notes


def _is_tiff(url):
    return url.lower().endswith(TIFF_SUFFIXES)


def _is_s3_object(source):
    """An ``s3://`` URL naming one TIFF (not a prefix): its sidecars are beside it."""
    return files.is_s3(source) and _is_tiff(source) and bool(existing([source]))


def _sidecars_beside(url):
    """The sidecars of a file named on its own, local or ``s3://``: those in its folder."""
    folder, name = posixpath.split(url)
    wanted = set(sidecars.candidates(name))
    if files.is_s3(url):
        listed = files.list_files(folder + "/", sidecars.SUFFIXES)
        return sorted(u for u in listed if posixpath.dirname(u) == folder and _in(u, wanted))
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.lower() in wanted)


def _in(url, wanted):
    return posixpath.basename(url).lower() in wanted


def _sidecar_copies(raster_name, urls):
    """(URL, name in the upload) of each sidecar: the name GDAL looks for beside the
    raster's (``sidecars.name_for``), checked as a raster's name is."""
    return [
        (u, check_filename(sidecars.name_for(raster_name, posixpath.basename(u)))) for u in urls
    ]


def create_upload(sources, owner, datasource=DEFAULT_DATASOURCE, project=None, upload_id=None):
    """Copies the sources into a new upload and records it as UPLOADED.

    Args:
        sources: local files, folders or ``s3://`` prefixes.
        owner: the user the scenes belong to.
        datasource: datasource name of the scenes.
        project: a project id or name to link the scenes to.
        upload_id: a chosen id (for a repeatable demo); a new random one by default.

    Returns:
        the new upload's id (UUID).

    Raises:
        InvalidInput: see ``collect_sources``; NotFound: an unknown project id.
    """
    found, notes = collect_sources(sources)
    url = config.settings().database_url
    upload_id = upload_id or uuid.uuid4()
    kind = "S3" if all(files.is_s3(f.url) for f in found) else "LOCAL"
    with db.transaction(url) as conn:
        source = datasources.upsert_datasource(conn, datasource, owner)
        project_id = projects.resolve_project(conn, project, owner) if project else None
        uploads.create_upload(
            conn,
            upload_id,
            owner,
            kind,
            [f.name for f in found],
            status=UploadStatus.UPLOADING,
            datasource_id=source["id"],
            project_id=project_id,
            notes=notes,
        )
    copies = [copy for f in found for copy in f.copies()]
    try:
        with ThreadPoolExecutor(4) as pool:
            sizes = dict(
                zip(
                    (name for _, name in copies),
                    pool.map(lambda c: files.copy_into(c[0], upload_url(upload_id, c[1])), copies),
                    strict=True,
                )
            )
    except Exception as err:
        with db.transaction(url) as conn:
            uploads.set_upload_status(
                conn, upload_id, UploadStatus.FAILED, reason=f"copying the files failed: {err}"
            )
        raise
    with db.transaction(url) as conn:
        for f in found:
            sidecar_names = [name for _, name in f.sidecars]
            uploads.add_file(conn, upload_id, f.name, f.url, sizes[f.name], sidecar_names)
        uploads.set_upload_status(conn, upload_id, UploadStatus.UPLOADED)
    return upload_id


def replace_file(upload_id, source):
    """Replaces one file of an upload with a corrected one and forgets what was made from
    the old one (outputs, markers, the scene's tiles), so that the next ``upload process``
    redoes that file alone.

    The state changes first, the deletions after: the upload goes UPLOADING (no run may
    start), the file's markers go and its scene goes NOTINGESTED in one transaction; then the
    file is copied in and the old outputs are deleted; then the upload is UPLOADED again.
    Killed anywhere, the upload stays UPLOADING and the same call finishes the job.

    Raises:
        InvalidInput: the upload has no file of that name, or the source is missing.
        AlreadyRunning: the upload is being processed, or the file's scene ingested, now.
        IllegalTransition: the upload is COMPLETE, ABORTED or still being created.
    """
    name = check_filename(posixpath.basename(source))
    if not os.path.isfile(source) and not files.is_s3(source):
        raise InvalidInput(f"{source}: no such file")
    copies = _sidecar_copies(name, _sidecars_beside(source))
    sidecar_names = [n for _, n in copies]
    url = config.settings().database_url
    upload_id = uploads.parse_upload_id(upload_id)
    scene_id = ids.scene_id_for_upload(upload_id, name)
    if _running_in_luigid(upload_id):
        raise AlreadyRunning(
            f"upload {upload_id} has tasks running in luigid; replace {name} when they end"
        )
    with db.transaction(url) as conn:
        status = uploads.get_upload(conn, upload_id, lock=True)["upload_status"]
        if status == UploadStatus.PROCESSING:
            raise AlreadyRunning(
                f"upload {upload_id} is being processed; replace {name} when that run ends "
                "(`rf-pipelines reap` puts back an upload whose worker died)"
            )
        known = {f["filename"]: f for f in uploads.list_files(conn, upload_id)}
        if name not in known:
            raise InvalidInput(f"upload {upload_id} has no file named {name!r}")
        # A world file or .prj may serve two rasters of one stem: the other keeps it.
        kept = {s for other, f in known.items() if other != name for s in f["sidecars"]}
        stale = set(known[name]["sidecars"]) - set(sidecar_names) - kept
        uploads.set_upload_status(conn, upload_id, UploadStatus.UPLOADING, f"replacing {name}")
        markers.delete_matching(conn, {"upload_id": str(upload_id), "filename": name})
        scenes.forget_ingest(conn, scene_id)
    size = files.copy_into(source, upload_url(upload_id, name))
    for sidecar_url, sidecar in copies:
        files.copy_into(sidecar_url, upload_url(upload_id, sidecar))
    for old in stale:
        # The old file's mask or world file must not apply to the new one.
        files.remove(upload_url(upload_id, check_filename(old)))
    files.remove_tree(processed_url(upload_id, name))
    files.remove_tree(files.join(config.settings().data_root, "ingest", str(scene_id)))
    with db.transaction(url) as conn:
        uploads.add_file(conn, upload_id, name, source, size, sidecar_names)
        uploads.set_upload_status(conn, upload_id, UploadStatus.UPLOADED)


def _running_in_luigid(upload_id):
    """True when luigid runs a task of this upload (its status may already say FAILED while
    the failed file's other steps still run). With ``[core] local_scheduler`` there is no
    luigid to ask.

    Raises:
        ServiceUnavailable: luigid does not answer, so what it runs is unknown.
    """
    import luigi.interface

    from rf_pipelines.operations import running_tasks

    if luigi.interface.core().local_scheduler:
        return False
    for params in running_tasks(config.scheduler_url()):
        try:
            if uploads.parse_upload_id(params.get("upload_id") or "") == upload_id:
                return True
        except InvalidInput:
            continue
    return False
