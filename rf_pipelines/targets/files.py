"""Local and S3 file targets chosen by URL; writes are atomic on both."""

import posixpath
from urllib.parse import urlsplit

import luigi
import luigi.format
from luigi.contrib.s3 import S3Target

from rf_pipelines import clients, config


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


def output_url(root, workflow, object_id, step, version, name):
    """The one place output paths are made: ``{root}/{workflow}/{id}/{step}/v{version}/{name}``.

    A task's version is part of the path, so bumping it writes new outputs beside the old ones.
    """
    if not str(object_id) or "/" in str(object_id) or str(object_id) in (".", ".."):
        raise ValueError(f"object id {object_id!r} cannot be a path segment")
    return join(root, workflow, str(object_id), step, f"v{int(version)}", name)
