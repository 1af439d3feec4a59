"""Timing helpers shared by the benchmarks: medians of repeated runs."""

import statistics
import time


def median_seconds(fn, repeat):
    """Runs ``fn`` ``repeat`` times; returns the median wall time in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
