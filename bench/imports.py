"""A day of 20,000 Sentinel-2 scenes (tileInfo.json made from the real 19UDP file as a
template, served by the local object store) imported into PostgreSQL, versus a baseline of
one Luigi task per scene measured in the same run; the same day through a proxy that adds
30 ms to every request (``bench/proxy.py``, as a real store answers), against the first
import; a rerun of the completed day; and a backfill check over 365 completed days.
"""

import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import luigi
import psycopg2
from click.testing import CliRunner

from bench.timing import row
from rf_pipelines import clients, config, sources
from rf_pipelines.catalog import db, imports, migrate
from rf_pipelines.cli import cli
from rf_pipelines.tasks import ImportDay
from rf_pipelines.tasks.runner import build

TESTDATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "sentinel2"
TEMPLATE = json.loads(
    (TESTDATA / "sentinel-s2-l1c_tiles_19_U_DP_2017_7_29_0_tileInfo.json").read_text()
)
BUCKET = "rf-bench-s2-v2"  # v2: a product name per tile (v1's tiles shared one)
DAY = datetime.date(2021, 6, 1)
PER_PRODUCT = 500
# The same for the batched import and the baseline (2 measured slower: the store and
# PostgreSQL share the 2 cores).
WORKERS = 1
SQUARES = [a + b for a in "CDEFGHJKLMNPQRSTUV" for b in "ABCDEFGHJKLMNPQRSTUV"]


NETWORK_DELAY_MS = 30


def _tile(product, index):
    """Tile ``index`` of product ``product``: its own grid square, zone and sensing time, so
    that each is a scene of its own."""
    info = dict(TEMPLATE)
    zone, square, sequence = product % 60 + 1, SQUARES[index % len(SQUARES)], index // len(SQUARES)
    info["path"] = f"tiles/{zone}/U/{square}/{DAY.year}/{DAY.month}/{DAY.day}/{sequence}"
    info["utmZone"], info["gridSquare"] = zone, square
    info["productName"] = (
        f"S2A_MSIL1C_{DAY:%Y%m%d}T1536{sequence:02d}_N0205_R{product:03d}_T{zone:02d}U{square}"
        f"_{DAY:%Y%m%d}T170000"
    )
    info["timestamp"] = f"{DAY}T15:35:57.455Z"
    return info


def populate(count):
    """Writes the day's products and tiles once (kept in the bucket for later runs)."""
    s3 = clients.aws_client("s3", config.settings().s3_endpoint_url)
    try:
        s3.create_bucket(Bucket=BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    source = sources.Sentinel2Bucket(f"s3://{BUCKET}")
    if len(source.discover(DAY)) == count:
        return
    products = (count + PER_PRODUCT - 1) // PER_PRODUCT

    def put_product(p):
        tiles = [_tile(p, i) for i in range(PER_PRODUCT) if p * PER_PRODUCT + i < count]
        name = f"S2A_MSIL1C_{DAY:%Y%m%d}_R{p:03d}"
        for tile in tiles:
            s3.put_object(Bucket=BUCKET, Key=f"{tile['path']}/tileInfo.json", Body=json.dumps(tile))
        s3.put_object(
            Bucket=BUCKET,
            Key=f"products/{DAY.year}/{DAY.month}/{DAY.day}/{name}/productInfo.json",
            Body=json.dumps({"name": name, "tiles": [{"path": t["path"]} for t in tiles]}),
        )

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(put_product, range(products)))


class ImportOneScene(luigi.Task):
    """Baseline: what one-task-per-scene looks like (own read, own upsert, own marker)."""

    ref = luigi.Parameter()

    def output(self):
        from rf_pipelines.targets import MarkerTarget

        return MarkerTarget(f"one:{self.ref}", "ImportOneScene", 1, {"ref": self.ref})

    def run(self):
        [record] = sources.get_source("sentinel2").read_batch([self.ref])
        record["scene_metadata"]["import_source"] = "sentinel2"
        with self.output().transaction() as conn:
            imports.upsert_scenes(conn, [record], "ImportOneScene@v1")


class ImportScenesOneByOne(luigi.WrapperTask):
    refs = luigi.ListParameter()

    def requires(self):
        return [ImportOneScene(ref=r) for r in self.refs]


def _fresh_database():
    admin = config.settings().database_url.rsplit("/", 1)[0] + "/postgres"
    name = f"rf_bench_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    url = admin.rsplit("/", 1)[0] + "/" + name
    migrate.migrate(url)
    os.environ["RF_DATABASE_URL"] = url
    config.settings.cache_clear()
    return admin, name


def _drop(admin, name):
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def run(repeat=1, count=20_000, baseline_count=1_000):
    """Yields benchmark rows; ``repeat`` is unused (one day is one long measurement)."""
    import logging

    logging.getLogger("luigi-interface").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="rf-bench-imports-") as folder:
        os.environ["RF_DATA_ROOT"] = folder
        os.environ["RF_SENTINEL2_ROOT"] = f"s3://{BUCKET}"
        config.settings.cache_clear()
        populate(count)
        refs = sources.Sentinel2Bucket(f"s3://{BUCKET}").discover(DAY)

        admin, name = _fresh_database()
        try:
            ours = _import_day_seconds()
            _assert_complete(count)
            rerun = _cli_seconds(["import", "sentinel2", "--date", str(DAY)])
            backfill = _backfill_seconds()
        finally:
            _drop(admin, name)

        admin, name = _fresh_database()
        try:
            with _delayed_store(NETWORK_DELAY_MS):
                distant = _import_day_seconds()
            _assert_complete(count)
        finally:
            _drop(admin, name)

        admin, name = _fresh_database()
        try:
            start = time.perf_counter()
            build(
                [ImportScenesOneByOne(refs=refs[:baseline_count])],
                local_scheduler=True,
                workers=WORKERS,
            )
            one_by_one = time.perf_counter() - start
        finally:
            _drop(admin, name)

    ours_rate, base_rate = count / ours, baseline_count / one_by_one
    yield row(
        f"import {count:,} scenes in batches: {ours_rate:,.0f} scenes/s",
        ours,
        f"1 task/scene: {base_rate:,.0f}/s",
        one_by_one * count / baseline_count,
    )
    yield row(
        f"same through a {NETWORK_DELAY_MS} ms store: {count / distant:,.0f} scenes/s",
        distant,
        "no added latency (above)",
        ours,
    )
    yield row("rerun of the completed day (CLI)", rerun, "-", float("nan"))
    yield row("backfill check over 365 completed days (CLI)", backfill, "-", float("nan"))


def _import_day_seconds():
    start = time.perf_counter()
    build(
        [ImportDay(source="sentinel2", day=DAY, run_day=DAY)], local_scheduler=True, workers=WORKERS
    )
    return time.perf_counter() - start


def _assert_complete(count):
    with db.connect(config.settings().database_url) as conn:
        assert imports.day_report(conn, "sentinel2", DAY)["status"] == "COMPLETE"
        scenes = imports.day_scenes(conn, "sentinel2", DAY)
    assert len(scenes) == count, f"{len(scenes)} scenes, not {count}"


class _delayed_store:
    """Points the importer at the object store through ``bench/proxy.py`` in a process of
    its own, adding ``delay_ms`` to every request."""

    def __init__(self, delay_ms):
        self.delay_ms = delay_ms

    def __enter__(self):
        from rf_pipelines.targets import reading

        self.endpoint = config.settings().s3_endpoint_url
        upstream = self.endpoint.rsplit("/", 1)[-1]
        self.proxy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.proxy",
                "--upstream",
                upstream,
                "--delay-ms",
                str(self.delay_ms),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        os.environ["AWS_ENDPOINT_URL_S3"] = self.proxy.stdout.readline().strip()
        config.settings.cache_clear()
        clients.reset()
        reading._store.cache_clear()
        return self

    def __exit__(self, *exc):
        from rf_pipelines.targets import reading

        self.proxy.terminate()
        self.proxy.wait(10)
        os.environ["AWS_ENDPOINT_URL_S3"] = self.endpoint
        config.settings.cache_clear()
        clients.reset()
        reading._store.cache_clear()
        return False


def _cli_seconds(args):
    start = time.perf_counter()
    result = CliRunner().invoke(cli, args + ["--local-scheduler"])
    seconds = time.perf_counter() - start
    assert result.exit_code == 0, result.output[-2000:]
    return seconds


def _backfill_seconds():
    """Marks 365 days complete through the catalog, then times a backfill over them."""
    first = DAY - datetime.timedelta(364)
    with db.transaction(config.settings().database_url) as conn:
        for n in range(365):
            day = first + datetime.timedelta(n)
            if day != DAY:
                imports.start_day(conn, "sentinel2", day, 0, None)
                imports.finish_day(conn, "sentinel2", day)
    return _cli_seconds(["import", "sentinel2", "--start", str(first), "--stop", str(DAY)])
