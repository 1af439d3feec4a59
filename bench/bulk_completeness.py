"""Bulk completeness of N objects under one prefix versus N per-target exists() calls.

Baseline: luigi's own ``S3Target(url).exists()`` per object (what a task's ``complete()``
does), on the same local object store and the same objects, in the same run.
"""

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

from luigi.contrib.s3 import S3Target

from bench.timing import median_seconds, row
from rf_pipelines import clients, config
from rf_pipelines.targets import existing, join

BUCKET = "rf-bench"


def _populate_s3(s3, prefix, count):
    """Writes ``count`` small objects under the prefix unless they are already there."""
    try:
        s3.create_bucket(Bucket=BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    urls = [f"s3://{BUCKET}/{prefix}/{i:06d}.json" for i in range(count)]
    if len(existing(urls)) == count:
        return urls
    with ThreadPoolExecutor(32) as pool:
        list(
            pool.map(
                lambda i: s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{i:06d}.json", Body=b"{}"),
                range(count),
            )
        )
    return urls


def run(count=10_000, repeat=3):
    """Yields benchmark rows (dicts) for the S3 store and a local folder."""
    endpoint = config.settings().s3_endpoint_url
    s3 = clients.aws_client("s3", endpoint)
    urls = _populate_s3(s3, f"bulk-{count}", count)
    assert len(existing(urls)) == count
    luigi_client = clients.luigi_s3_client(endpoint)

    bulk = median_seconds(lambda: existing(urls), repeat)
    per_target = median_seconds(
        lambda: [S3Target(u, client=luigi_client).exists() for u in urls], repeat
    )
    yield row(
        f"S3 store, {count:,} objects: existing()", bulk, "S3Target.exists() each", per_target
    )

    with tempfile.TemporaryDirectory() as folder:
        paths = [join(folder, "out", f"{i:06d}.json") for i in range(count)]
        os.makedirs(os.path.dirname(paths[0]))
        for path in paths:
            open(path, "wb").close()
        bulk = median_seconds(lambda: existing(paths), repeat)
        per_target = median_seconds(lambda: [os.path.exists(p) for p in paths], repeat)
        yield row(
            f"local folder, {count:,} files: existing()", bulk, "os.path.exists() each", per_target
        )
