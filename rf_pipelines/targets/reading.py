"""Reading many small objects at once (import metadata): obstore when it is safe, boto3 if not.

boto3 spends 5-7 ms of Python on each GET (about 135-300 GETs/s a process here), which caps
an import far below its target; obstore (Rust, object_store) does about 1,600 GETs/s from
one process on the same store. Credentials come from the same boto3 session either way.

obstore's async runtime does not survive ``fork``: a child forked from a process that has
already used it hangs on its first request. Luigi forks a process per task when it runs
with more than one worker, so a process that inherited a used runtime reads with boto3.
"""

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from rf_pipelines import config
from rf_pipelines.targets import access, files

THREADS = 16
_used_by_pid = None  # the process whose obstore runtime is live


def read_many(urls, threads=THREADS):
    """The contents of ``urls`` (local or ``s3://``), read concurrently.

    Returns:
        list: for each URL, its bytes or the exception reading it raised
        (FileNotFoundError for a missing object).
    """
    read = _obstore_read if _obstore_usable() else files.read_bytes
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(functools.partial(_outcome, read), urls))


def _outcome(read, url):
    try:
        return read(url) if files.is_s3(url) else files.read_bytes(url)
    except Exception as err:  # noqa: BLE001 - returned to the caller, which names the URL
        return err


def _obstore_usable():
    global _used_by_pid
    if _used_by_pid not in (None, os.getpid()):
        return False  # forked from a process that used obstore: its runtime is gone
    _used_by_pid = os.getpid()
    return True


def _obstore_read(url):
    import obstore

    bucket, key = files.split_s3(url)
    store = _store(bucket, config.settings().s3_endpoint_url, access.mode_for(url))
    return bytes(obstore.get(store, key).bytes())


@functools.cache
def _store(bucket, endpoint_url, mode=access.SIGNED):
    import boto3
    from obstore.auth.boto3 import Boto3CredentialProvider
    from obstore.store import S3Store

    session = boto3.session.Session()
    options = {"region": session.region_name or "us-east-1"}
    if endpoint_url:
        options.update(endpoint=endpoint_url, virtual_hosted_style_request=False)
    if mode == access.UNSIGNED:
        options["skip_signature"] = True
    else:
        options["credential_provider"] = Boto3CredentialProvider(session)
        options["request_payer"] = mode == access.REQUESTER_PAYS
    return S3Store(
        bucket,
        client_options={"allow_http": bool(endpoint_url and endpoint_url.startswith("http:"))},
        # Bounded, like every other retry here: transient 5xx and timeouts only.
        retry_config={"max_retries": 4, "retry_timeout": timedelta(seconds=30)},
        **options,
    )
