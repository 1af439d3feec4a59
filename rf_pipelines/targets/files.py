"""Local and S3 file targets chosen by URL; writes are atomic on both."""

import contextlib
import fcntl
import json
import os
import posixpath
import shutil
import tempfile
import uuid
from urllib.parse import urlsplit

import luigi
import luigi.format
from luigi.contrib.s3 import S3Target

from rf_pipelines import clients, config
from rf_pipelines.errors import MissingBucket, NoRoom
from rf_pipelines.targets import access


def is_s3(url):
    """True for ``s3://`` URLs."""
    return url.startswith("s3://")


def join(root, *parts):
    """Joins path parts onto a data root, local or ``s3://``, with forward slashes."""
    cleaned = [str(p).strip("/") for p in parts if str(p).strip("/")]
    return posixpath.join(root.rstrip("/"), *cleaned) if cleaned else root


def split_s3(url):
    """Returns (bucket, key) of an ``s3://bucket/key`` URL."""
    parts = urlsplit(url)
    return parts.netloc, parts.path.lstrip("/")


def target_for(url, binary=True):
    """The target for a URL: luigi's LocalTarget for paths, S3Target for ``s3://``.

    Both write to a temporary file and publish it in one step on close (a rename, or a
    single S3 upload), so a reader never sees a partial object at ``url``, even when the
    writer is killed midway. Open for writing only inside ``with``: an exception then
    discards the temporary file.

    Args:
        url: a local path or ``s3://bucket/key``.
        binary: bytes in and out (default); False for text.
    """
    fmt = luigi.format.Nop if binary else luigi.format.get_default_format()
    if is_s3(url):
        client = clients.luigi_s3_client(config.settings().s3_endpoint_url)
        return S3Target(url, format=fmt, client=client)
    if "://" in url:
        url = config.parse_data_root(url, source="target URL")
    return luigi.LocalTarget(url, format=fmt)


def output_url(root, workflow, object_id, step, version, name, upstream=None):
    """The one place output paths are made:
    ``{root}/{workflow}/{id}/{step}/v{version}[-{upstream}]/{name}``.

    ``object_id`` may have several segments (``upload/file``), never ``..`` or empty ones.
    A task's version is part of the path, so bumping it writes new outputs beside the old ones;
    ``upstream`` (a digest of the versions of the steps it reads from) does the same when one
    of those is bumped.
    """
    segments = str(object_id).split("/")
    if any(seg in ("", ".", "..") or "\\" in seg for seg in segments):
        raise ValueError(f"object id {object_id!r} cannot be a relative path")
    folder = f"v{int(version)}" + (f"-{upstream}" if upstream else "")
    return join(root, workflow, str(object_id), step, folder, name)


def _s3(url=None):
    """The S3 client that reads ``url`` as ``targets.access`` says (unsigned, or signed)."""
    endpoint = config.settings().s3_endpoint_url
    if url is not None and access.mode_for(url) == access.UNSIGNED:
        return clients.unsigned_s3_client(endpoint)
    return clients.aws_client("s3", endpoint)


@contextlib.contextmanager
def _bucket_must_exist(bucket):
    """Turns S3's NoSuchBucket into MissingBucket, naming the endpoint that was asked: a
    public bucket looked up on a local store is a configuration error, not a crash."""
    import botocore.exceptions

    try:
        yield
    except botocore.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise
        endpoint = config.settings().s3_endpoint_url
        where = (
            f"the S3 endpoint {endpoint} (AWS_ENDPOINT_URL_S3 or RF_S3_ENDPOINT_URL)"
            if endpoint
            else "AWS S3"
        )
        raise MissingBucket(f"bucket {bucket!r} does not exist on {where}") from err


def publish(local_path, url):
    """Moves a finished local file to ``url`` in one step: a rename into place (local) or
    one upload (S3), so readers never see it half-written."""
    if is_s3(url):
        bucket, key = split_s3(url)
        _s3().upload_file(str(local_path), bucket, key)
        os.unlink(local_path)
        return
    os.makedirs(os.path.dirname(url), exist_ok=True)
    # mkstemp makes files 0600; a published output is readable as the umask allows (0644
    # under 022), like every other file written here, so a tile server can serve it.
    os.chmod(local_path, 0o666 & ~current_umask())
    if os.stat(local_path).st_dev != os.stat(os.path.dirname(url)).st_dev:
        # Another file system: copy beside the final path first, so the last step is a rename.
        tmp = f"{url}.tmp-{os.getpid()}"
        shutil.copyfile(local_path, tmp)
        os.unlink(local_path)
        local_path = tmp
    os.replace(local_path, url)


def current_umask():
    """The process's umask, read without changing it (Linux reports it in /proc)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting, then restore at once
    os.umask(mask)
    return mask


def copy_into(source, url):
    """Copies a local file or an ``s3://`` object to ``url`` atomically.

    Returns:
        the number of bytes copied.
    """
    if is_s3(source) and is_s3(url):
        bucket, key = split_s3(url)
        src_bucket, src_key = split_s3(source)
        _s3().copy({"Bucket": src_bucket, "Key": src_key}, bucket, key)
        return object_size(url)
    with staged(source) as local:
        fd, tmp = tempfile.mkstemp(prefix=".copy-", dir=_scratch_dir(url))
        os.close(fd)
        shutil.copyfile(local, tmp)
        size = os.path.getsize(tmp)
        publish(tmp, url)
        return size


def _scratch_dir(url):
    """A local folder for temporary files: beside ``url`` when local, so renames are atomic;
    the scratch folder (``RF_SCRATCH_DIR``) for an ``s3://`` URL."""
    folder = scratch_dir() if is_s3(url) else os.path.dirname(url)
    os.makedirs(folder, exist_ok=True)
    return folder


def scratch_dir():
    """The local folder for files on their way to or from S3 (``RF_SCRATCH_DIR``)."""
    return config.settings().scratch_dir


@contextlib.contextmanager
def room(needs, what):
    """Reserves room for a job in local folders before it starts, and frees it at the end.

    Conversions that run at once (a pool's processes, other workers on the machine) each
    reserve what they will write, in a ledger beside the files (``.rf-room``, under a lock):
    a job starts only when the free space, less what others have reserved, holds it; a
    reservation of a process that died is dropped. Conservative: space another job has
    already written is counted twice until it ends.

    Args:
        needs: {local folder: bytes the job will write there}.
        what: the job, for the message.

    Raises:
        NoRoom: names the folder, what it has, what the job needs, and the setting.
    """
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    reserved = []
    try:
        for folder, wanted in needs.items():
            if wanted:
                _reserve(folder, wanted, token, what)
                reserved.append(folder)
        yield
    finally:
        for folder in reserved:
            with _ledger(folder) as ledger:
                ledger.pop(token, None)


def _reserve(folder, wanted, token, what):
    with _ledger(folder) as ledger:
        others = sum(ledger.values())
        free = shutil.disk_usage(folder).free
        if free - others < wanted:
            setting = " (RF_SCRATCH_DIR)" if folder == scratch_dir() else ""
            held = f", {_size(others)} of it reserved by jobs running now," if others else ""
            raise NoRoom(
                f"{what}: {folder}{setting} has {_size(free)} free{held} and this needs about "
                f"{_size(wanted)}; free some room or point RF_SCRATCH_DIR at a larger disk"
            )
        ledger[token] = wanted


@contextlib.contextmanager
def _ledger(folder):
    """Yields the folder's reservations {token: bytes}, under an exclusive lock, and writes
    them back; those of processes no longer alive are dropped."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, ".rf-room")
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path) as src:
                ledger = json.load(src)
        except (FileNotFoundError, ValueError):
            ledger = {}
        from rf_pipelines.services import pid_alive  # not at import: services imports this

        ledger = {t: n for t, n in ledger.items() if pid_alive(int(t.split("-")[0]))}
        yield ledger
        with open(path + ".tmp", "w") as out:
            json.dump(ledger, out)
        os.replace(path + ".tmp", path)


def _size(count):
    """``count`` bytes for people: 812 B, 23.4 kB, 2.1 GB."""
    if count < 1000:
        return f"{count:,.0f} B"
    for unit in ("kB", "MB"):
        count /= 1000
        if count < 1000:
            return f"{count:,.1f} {unit}"
    return f"{count / 1000:,.1f} GB"


@contextlib.contextmanager
def staged(url, beside=()):
    """Yields a local path with the content of ``url``: the file itself, or a download.

    Args:
        beside: URLs of files in the same folder as ``url`` that must be beside it (GDAL's
            sidecars: a mask, overviews); downloaded with it, under their own names.
    """
    if not is_s3(url):
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="rf-stage-", dir=_scratch_dir(url)) as folder:
        for other in beside:
            _download(other, folder)
        yield _download(url, folder)


def _download(url, folder):
    bucket, key = split_s3(url)
    local = os.path.join(folder, posixpath.basename(key) or "object")
    _s3(url).download_file(bucket, key, local, ExtraArgs=access.boto_args(url) or None)
    return local


@contextlib.contextmanager
def writing(url, suffix=""):
    """Yields a local path to write; on success it is published to ``url``, on error removed."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=_scratch_dir(url))
    os.close(fd)
    try:
        yield tmp
        publish(tmp, url)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def object_size(url):
    """Size in bytes of a local file or S3 object."""
    if is_s3(url):
        bucket, key = split_s3(url)
        return _s3(url).head_object(Bucket=bucket, Key=key, **access.boto_args(url))[
            "ContentLength"
        ]
    return os.path.getsize(url)


def fingerprint(url):
    """What tells one version of a file from the next: a local file's size and modification
    time, an S3 object's ETag.

    Raises:
        FileNotFoundError: no such file or object (a folder is none either).
    """
    import botocore.exceptions

    if not is_s3(url):
        if not os.path.isfile(url):
            raise FileNotFoundError(url)
        info = os.stat(url)
        return f"{info.st_size}-{info.st_mtime_ns}"
    bucket, key = split_s3(url)
    try:
        head = _s3(url).head_object(Bucket=bucket, Key=key, **access.boto_args(url))
    except botocore.exceptions.ClientError as err:
        if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            raise FileNotFoundError(url) from err
        raise
    return head["ETag"].strip('"')


def list_files(prefix_url, suffixes):
    """URLs of the files under a folder or ``s3://`` prefix whose names end with a suffix."""
    suffixes = tuple(s.lower() for s in suffixes)
    if not is_s3(prefix_url):
        return sorted(
            os.path.join(root, name)
            for root, _dirs, names in os.walk(prefix_url)
            for name in names
            if name.lower().endswith(suffixes)
        )
    bucket, prefix = split_s3(prefix_url)
    pages = (
        _s3(prefix_url)
        .get_paginator("list_objects_v2")
        .paginate(Bucket=bucket, Prefix=prefix, **access.boto_args(prefix_url))
    )
    with _bucket_must_exist(bucket):
        return sorted(
            f"s3://{bucket}/{obj['Key']}"
            for page in pages
            for obj in page.get("Contents", ())
            if obj["Key"].lower().endswith(suffixes)
        )


def remove(url):
    """Deletes one file or object; a missing one is no error."""
    if not is_s3(url):
        with contextlib.suppress(FileNotFoundError):
            os.remove(url)
        return
    bucket, key = split_s3(url)
    _s3(url).delete_object(Bucket=bucket, Key=key)


def remove_tree(prefix_url):
    """Deletes everything under a folder or prefix (outputs being recomputed)."""
    if not is_s3(prefix_url):
        shutil.rmtree(prefix_url, ignore_errors=True)
        return
    bucket, prefix = split_s3(prefix_url.rstrip("/") + "/")
    for page in _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", ())]
        if keys:
            _s3().delete_objects(Bucket=bucket, Delete={"Objects": keys})


def gdal_options(url):
    """GDAL settings to read ``url`` in place: for ``s3://`` on an S3-compatible endpoint,
    path-style addressing against that endpoint; nothing for local files.

    GDAL caches what it read of an ``s3://`` object (its size, its blocks) for the life of
    the process; under an ``s3://`` data root, whose outputs are written anew when a step is
    redone or a file replaced, it caches nothing: a process that read the old COG would read
    the new one's bytes at the old one's offsets."""
    if not is_s3(url):
        return {}
    options = {}
    root = config.settings().data_root
    if is_s3(root):
        bucket, prefix = split_s3(root)
        options["CPL_VSIL_CURL_NON_CACHED"] = f"/vsis3/{bucket}/{prefix}".rstrip("/")
    endpoint = config.settings().s3_endpoint_url
    if not endpoint:
        return options
    parts = urlsplit(endpoint)
    return {
        **options,
        "AWS_S3_ENDPOINT": parts.netloc,
        "AWS_HTTPS": "YES" if parts.scheme == "https" else "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
    }


def gdal_env(url=None, **options):
    """A ``rasterio.Env`` to read or write ``url`` (``gdal_options``), with ``options``.

    Its session is given, not left to rasterio: with AWS credentials in the environment,
    rasterio would make a new boto3 session for each Env (measured: 30 ms each, ten times a
    file, more than the work on a small file). A local path gets none; an ``s3://`` URL the
    process's own boto3 session (``clients.rasterio_session``).
    """
    import rasterio
    from rasterio.session import DummySession

    session = clients.rasterio_session() if url and is_s3(url) else DummySession()
    return rasterio.Env(session=session, **gdal_options(url or ""), **options)


def read_bytes(url):
    """The content of a local file or S3 object.

    Raises:
        FileNotFoundError: no such file or object.
    """
    if not is_s3(url):
        with open(url, "rb") as src:
            return src.read()
    bucket, key = split_s3(url)
    s3 = _s3(url)
    try:
        return s3.get_object(Bucket=bucket, Key=key, **access.boto_args(url))["Body"].read()
    except s3.exceptions.NoSuchKey as err:
        raise FileNotFoundError(url) from err


def write_bytes(url, data):
    """Writes ``data`` to ``url`` atomically: one PUT on S3, a rename into place locally."""
    if is_s3(url):
        bucket, key = split_s3(url)
        _s3().put_object(Bucket=bucket, Key=key, Body=data)
        return
    os.makedirs(os.path.dirname(url), exist_ok=True)
    tmp = f"{url}.tmp-{os.getpid()}"
    with open(tmp, "wb") as out:
        out.write(data)
    os.replace(tmp, url)


def list_folders(prefix_url):
    """Names of the immediate sub-folders (S3 common prefixes) of a folder or prefix."""
    if not is_s3(prefix_url):
        try:
            return sorted(e.name for e in os.scandir(prefix_url) if e.is_dir())
        except FileNotFoundError:
            return []
    bucket, prefix = split_s3(prefix_url.rstrip("/") + "/")
    pages = (
        _s3(prefix_url)
        .get_paginator("list_objects_v2")
        .paginate(Bucket=bucket, Prefix=prefix, Delimiter="/", **access.boto_args(prefix_url))
    )
    with _bucket_must_exist(bucket):
        return sorted(
            p["Prefix"][len(prefix) :].rstrip("/")
            for page in pages
            for p in page.get("CommonPrefixes", ())
        )
