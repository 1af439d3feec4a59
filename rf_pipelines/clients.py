"""One cached client factory per external service; nothing is created at import time."""

import functools
import os
import threading

import boto3
from botocore.config import Config

# Bounded retries with backoff for throttling and 5xx; permanent errors surface at once.
_BOTO_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=32)
# boto3 sessions are not safe to create clients from in several threads at once (boto3#1592):
# the first calls from concurrent readers go one at a time. Clients themselves are safe.
_CREATING = threading.RLock()


def _cached(factory):
    """functools.cache, with creation under one lock."""
    cached = functools.cache(factory)

    @functools.wraps(factory)
    def get(*args):
        with _CREATING:
            return cached(*args)

    get.cache_clear = cached.cache_clear
    get.cache_info = cached.cache_info
    return get


@_cached
def _session():
    return boto3.session.Session()


@_cached
def aws_client(service, endpoint_url=None):
    """A shared boto3 client.

    Args:
        service: boto3 service name ("s3", "sqs", "sns", "ecs", "logs", "ses").
        endpoint_url: an S3-compatible store or moto's server; None for AWS.
    """
    return _session().client(service, endpoint_url=endpoint_url, config=_BOTO_CONFIG)


@_cached
def s3_resource(endpoint_url=None):
    """The shared boto3 S3 resource, for luigi's S3 client."""
    return _session().resource("s3", endpoint_url=endpoint_url, config=_BOTO_CONFIG)


@_cached
def luigi_s3_client(endpoint_url=None):
    """luigi's S3Client wired to the shared boto3 resource instead of one of its own."""
    from luigi.contrib.s3 import S3Client

    client = S3Client()
    client.s3 = s3_resource(endpoint_url)
    return client


@_cached
def unsigned_s3_client(endpoint_url=None):
    """An S3 client that signs nothing: anonymous reads of open-data buckets."""
    from botocore import UNSIGNED

    return _session().client(
        "s3",
        endpoint_url=endpoint_url,
        config=_BOTO_CONFIG.merge(Config(signature_version=UNSIGNED)),
    )


@_cached
def rasterio_session():
    """rasterio's AWS session on the shared boto3 session: GDAL's credentials for s3://."""
    from rasterio.session import AWSSession

    return AWSSession(session=_session())


def reset():
    """Forgets every cached client (after the environment changed, as in tests)."""
    for factory in (
        _session,
        aws_client,
        s3_resource,
        luigi_s3_client,
        unsigned_s3_client,
        rasterio_session,
    ):
        factory.cache_clear()


def _forget_after_fork():
    """In a forked child: new clients and a new lock, never the parent's. A client's pooled
    keep-alive connections would otherwise be shared with the parent and its other children,
    and a lock held by another of the parent's threads at the fork would stay held."""
    global _CREATING
    _CREATING = threading.RLock()
    reset()


os.register_at_fork(after_in_child=_forget_after_fork)
