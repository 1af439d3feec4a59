"""read_many: concurrent reads of small objects, also in processes forked after a read."""

import multiprocessing
import uuid

from rf_pipelines import clients, config
from rf_pipelines.targets import reading


def _put(bucket, count):
    s3 = clients.aws_client("s3", config.settings().s3_endpoint_url)
    prefix = f"reading-{uuid.uuid4().hex[:8]}"
    for n in range(count):
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{n}.json", Body=f'{{"n": {n}}}'.encode())
    return [f"s3://{bucket}/{prefix}/{n}.json" for n in range(count)]


def test_reads_in_order_and_returns_errors_per_url(s3_bucket, tmp_path):
    urls = _put(s3_bucket, 40)
    local = tmp_path / "a.json"
    local.write_bytes(b"local")
    missing = f"s3://{s3_bucket}/reading-none/missing.json"
    got = reading.read_many([*urls, str(local), missing])
    assert got[:40] == [f'{{"n": {n}}}'.encode() for n in range(40)]
    assert got[40] == b"local"
    assert isinstance(got[41], FileNotFoundError)


def _child(urls, queue):
    queue.put(reading.read_many(urls))


def test_a_process_forked_after_a_read_still_reads(s3_bucket):
    """obstore's runtime does not survive fork (the child would hang); such a child reads
    with boto3, as luigi's forked workers do."""
    urls = _put(s3_bucket, 5)
    assert reading.read_many(urls)[0] == b'{"n": 0}'  # the parent has used obstore
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(urls, queue))
    child.start()
    child.join(30)
    hung = child.is_alive()
    if hung:
        child.kill()
    assert not hung
    assert queue.get(timeout=5) == [f'{{"n": {n}}}'.encode() for n in range(5)]
