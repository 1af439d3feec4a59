"""Runs every benchmark and prints one table: ``python -m bench`` (via scripts/bench)."""

import argparse

from bench import (
    backfill,
    bulk_completeness,
    geoparquet,
    imports,
    ingest,
    upload_workflow,
    uploads_many,
)

BENCHMARKS = {
    "bulk_completeness": bulk_completeness.run,
    "upload_workflow": upload_workflow.run,
    "uploads_many": uploads_many.run,
    "upload_memory": lambda repeat: upload_workflow.run_memory(),
    "upload_over_2g_pixels": lambda repeat: upload_workflow.run_memory(
        size=46_341, bands=1, through_s3=False
    ),
    "imports": imports.run,
    "geoparquet": geoparquet.run,
    "backfill": backfill.run,
    "ingest": ingest.run,
    "ingest_cluster": ingest.run_cluster,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(BENCHMARKS), help="Run one benchmark.")
    parser.add_argument("--repeat", type=int, default=3, help="Runs per figure (median).")
    args = parser.parse_args()
    rows = []
    for name, run in BENCHMARKS.items():
        if args.only in (None, name):
            rows.extend(run(repeat=args.repeat))
    header = f"{'benchmark':60} {'median s':>9}  {'baseline':24} {'median s':>9} {'ours/base':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['benchmark']:60} {r['seconds']:9.3f}  {r['baseline']:24} "
            f"{r['baseline_seconds']:9.3f} {r['seconds'] / r['baseline_seconds']:9.3f}"
        )


if __name__ == "__main__":
    main()
