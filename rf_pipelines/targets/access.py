"""How each S3 location is read: signed (the default), requester-pays or unsigned.

AWS's public imagery buckets are paid for in two ways. ``sentinel-s2-l1c``, ``sentinel-s2-l2a``
and ``usgs-landsat`` are requester-pays: a request that does not say it pays
(``x-amz-request-payer: requester``) is refused with 403. Open-data buckets such as Earth
Search's ``sentinel-cogs`` allow anonymous reads, so a worker needs no credentials for them.

``RF_S3_ACCESS`` (``[RfConfig] s3_access``) sets it per URL prefix, ``PREFIX=MODE,...`` with
MODE one of ``signed``, ``requester-pays`` and ``unsigned``; the longest matching prefix wins
and the entries extend (or override) the built-in ``DEFAULTS``. Both readers follow it:
boto3 (``targets.files``) and obstore (``targets.reading``).
"""

from rf_pipelines import config

SIGNED = "signed"
REQUESTER_PAYS = "requester-pays"
UNSIGNED = "unsigned"
MODES = (SIGNED, REQUESTER_PAYS, UNSIGNED)

DEFAULTS = (
    ("s3://sentinel-s2-l1c", REQUESTER_PAYS),
    ("s3://sentinel-s2-l2a", REQUESTER_PAYS),
    ("s3://usgs-landsat", REQUESTER_PAYS),
    ("s3://sentinel-cogs", UNSIGNED),
)


def mode_for(url):
    """How ``url`` (``s3://bucket/key``) is read: the mode of the longest matching prefix of
    RF_S3_ACCESS and the defaults, else ``signed``."""
    pairs = {**dict(DEFAULTS), **dict(config.settings().s3_access)}
    best = max((p for p in pairs if url.startswith(p)), key=len, default=None)
    return pairs[best] if best else SIGNED


def boto_args(url):
    """Extra arguments for a boto3 read of ``url``: ``RequestPayer`` when it pays."""
    return {"RequestPayer": "requester"} if mode_for(url) == REQUESTER_PAYS else {}
