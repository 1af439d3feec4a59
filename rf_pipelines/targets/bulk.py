"""Bulk completeness: which of many outputs exist, with one listing per folder or prefix."""

import os
import posixpath
from collections import defaultdict

from rf_pipelines import clients, config
from rf_pipelines.targets.files import is_s3, split_s3


def existing(urls):
    """Returns the subset of ``urls`` that exist.

    One directory listing (local) or one paginated ``ListObjectsV2`` with a delimiter (S3) per
    distinct parent, instead of one request per URL.

    Args:
        urls: local paths and/or ``s3://`` URLs of files.

    Returns:
        set of the URLs that exist.
    """
    by_parent = defaultdict(list)
    for url in urls:
        by_parent[posixpath.dirname(url)].append(url)
    found = set()
    for parent, members in by_parent.items():
        names = _list_s3(parent) if is_s3(parent) else _list_local(parent)
        found.update(u for u in members if posixpath.basename(u) in names)
    return found


def _list_local(folder):
    try:
        with os.scandir(folder) as entries:
            return {e.name for e in entries if e.is_file()}
    except FileNotFoundError:
        return set()


def _list_s3(prefix_url):
    bucket, prefix = split_s3(prefix_url)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    s3 = clients.aws_client("s3", config.settings().s3_endpoint_url)
    names = set()
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, Delimiter="/"
    )
    try:
        for page in pages:
            names.update(obj["Key"][len(prefix) :] for obj in page.get("Contents", ()))
    except s3.exceptions.NoSuchBucket:
        return set()
    return names
