"""read_many and stream: deep, bounded reads of small objects, also in processes forked after
a read."""

import multiprocessing
import threading
import time
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


def test_reads_run_deep_and_never_further_ahead_than_the_window(
    s3_bucket, local_services, settings_env
):
    """A store 0.5 s away: the first answer comes back only after the whole window was asked
    for (deep: 16 reader threads would have asked for 16), and a caller that stops taking
    stops the reads (bounded: memory does not grow with the number of objects)."""
    from bench.proxy import Proxy

    urls = _put(s3_bucket, 100)
    host, port = local_services["AWS_ENDPOINT_URL_S3"].rsplit("/", 1)[-1].rsplit(":", 1)
    with Proxy(host, port, delay_s=0.5) as proxy:
        settings_env.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
        config.settings.cache_clear()
        assert reading.read_many(urls[:1]) == [b'{"n": 0}']  # the store's client is made
        asked = proxy.requests
        bodies = reading.stream(urls, depth=40)
        first = next(bodies)
        assert proxy.requests - asked == 40
        time.sleep(1.0)
        assert proxy.requests - asked == 40
        rest = list(bodies)
        assert proxy.requests - asked == 100
    assert [first, *rest] == [(u, f'{{"n": {n}}}'.encode()) for n, u in enumerate(urls)]


def test_a_caller_that_stops_early_leaves_no_reader_threads_behind(s3_bucket):
    urls = _put(s3_bucket, 30)
    before = threading.active_count()
    bodies = reading.stream(urls, depth=8)
    assert next(bodies) == (urls[0], b'{"n": 0}')
    assert threading.active_count() > before  # the readers
    bodies.close()  # the reads in flight end, and the readers with them
    assert threading.active_count() == before
