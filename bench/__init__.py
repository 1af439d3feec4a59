"""Benchmarks: each module's ``run(args)`` yields rows measured against a same-run baseline."""
