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


def row(name, seconds, baseline_name, baseline_seconds):
    """One line of the benchmark table: our median and the same-run baseline's."""
    return {
        "benchmark": name,
        "seconds": seconds,
        "baseline": baseline_name,
        "baseline_seconds": baseline_seconds,
    }
