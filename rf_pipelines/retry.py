"""Bounded retries with exponential backoff, for transient errors only."""

import logging

import tenacity

from rf_pipelines.errors import is_transient

log = logging.getLogger(__name__)

ATTEMPTS = 4
FIRST_WAIT_S = 0.5
MAX_WAIT_S = 8


def call(fn, *args, attempts=ATTEMPTS, first_wait=FIRST_WAIT_S, **kwargs):
    """Calls ``fn``; retries it on a transient error, at most ``attempts`` times in all.

    Permanent errors (bad input) propagate at once; the last transient error propagates
    when the attempts are used up.
    """
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=first_wait, max=MAX_WAIT_S),
        before_sleep=lambda state: log.warning(
            "transient error, attempt %d of %d: %s",
            state.attempt_number,
            attempts,
            state.outcome.exception(),
        ),
        reraise=True,
    )
    return retrying(fn, *args, **kwargs)
