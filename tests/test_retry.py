"""Bounded retries: transient errors are retried with backoff, permanent ones are not."""

import botocore.exceptions
import pytest

from rf_pipelines import retry
from rf_pipelines.errors import InvalidInput, ServiceUnavailable, is_transient


def _flaky(failures, error):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return "done"

    return fn, calls


def test_transient_errors_are_retried_until_success():
    fn, calls = _flaky(2, ServiceUnavailable("database restarting"))
    assert retry.call(fn, first_wait=0.01) == "done"
    assert len(calls) == 3


def test_retries_are_bounded():
    fn, calls = _flaky(10, ServiceUnavailable("database down"))
    with pytest.raises(ServiceUnavailable, match="database down"):
        retry.call(fn, attempts=3, first_wait=0.01)
    assert len(calls) == 3


def test_permanent_errors_fail_at_once():
    fn, calls = _flaky(10, InvalidInput("a.tif: the file is empty (0 bytes)"))
    with pytest.raises(InvalidInput):
        retry.call(fn, first_wait=0.01)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), True),
        (
            botocore.exceptions.ClientError(
                {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "Put"
            ),
            True,
        ),
        (
            botocore.exceptions.ClientError(
                {"Error": {"Code": "NoSuchKey"}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "Get"
            ),
            False,
        ),
        (ConnectionResetError(), True),
        (ValueError("bug"), False),
    ],
)
def test_classification(error, transient):
    assert is_transient(error) is transient
