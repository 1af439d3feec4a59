"""Tile rendering for scene ingest: the PySpark job on ``local[2]`` versus a single-process
renderer of the same tiles (the same function, one process), in the same run. Spark's
start-up is reported on its own row.

Source: a 6000 x 6000 x 3 uint16 COG made from real imagery (rio-tiler's cog.tif).
"""

import os
import shutil
import sys
import tempfile
import time

import rasterio

from bench.timing import median_seconds, row
from bench.upload_workflow import make_source
from rf_pipelines.imagery import cog, pyramid
from rf_pipelines.spark.pyramid_job import render_partition, render_pyramid

SIZE = 6000


def run(repeat=3):
    with tempfile.TemporaryDirectory(prefix="rf-bench-ingest-") as folder:
        source = os.path.join(folder, "source.tif")
        make_source(source, size=SIZE, bands=3)
        scene = os.path.join(folder, "scene.tif")
        with rasterio.open(source) as src:
            cog.write_cog(src, scene)
        plan = pyramid.plan(scene)
        tiles = pyramid.tiles(plan)
        out = os.path.join(folder, "tiles")

        def single():
            shutil.rmtree(out, ignore_errors=True)
            render_partition(scene, out, plan, tiles)

        baseline = median_seconds(single, repeat)

        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
        from pyspark.sql import SparkSession

        start = time.perf_counter()
        spark = (
            SparkSession.builder.master("local[2]")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.host", "127.0.0.1")
            .getOrCreate()
        )
        spark.sparkContext.parallelize([1, 2], 2).count()  # executors' Python workers up
        startup = time.perf_counter() - start
        try:

            def on_spark():
                shutil.rmtree(out, ignore_errors=True)
                counts = render_pyramid(spark.sparkContext, scene, out, plan)
                assert counts["tiles"] == len(tiles)

            ours = median_seconds(on_spark, repeat)
        finally:
            spark.stop()
    count = len(tiles)
    yield row(
        f"render {count} tiles, Spark local[2]: {count / ours:,.0f} tiles/s "
        f"({baseline / ours:.2f}x)",
        ours,
        f"1 process: {count / baseline:,.0f} tiles/s",
        baseline,
    )
    yield row("Spark session start-up (local[2])", startup, "-", float("nan"))


def run_cluster(repeat=3):
    """The same tiles rendered by a Spark standalone cluster (master and one 2-core worker
    from pyspark's scripts, ``services.start(home, ["spark"])``) against one process, in the
    same run, both reading the scene COG from the S3-compatible store and writing the tiles
    there, as RenderTiles does on a cluster (its package archive and executor settings)."""
    import uuid

    from rf_pipelines import clients, config, services
    from rf_pipelines.targets import files
    from rf_pipelines.tasks.ingest import executor_settings, package_archive

    home = config.settings().home
    started = not services.spark_running(home)
    services.start(home, [services.SPARK])
    root = f"s3://{services.LOCAL_BUCKET}/bench/ingest-cluster-{uuid.uuid4().hex[:8]}"
    saved = {
        k: os.environ.get(k) for k in ("RF_DATA_ROOT", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")
    }
    os.environ["RF_DATA_ROOT"] = root
    config.settings.cache_clear()
    clients.reset()
    try:
        with tempfile.TemporaryDirectory(prefix="rf-bench-cluster-") as folder:
            source = os.path.join(folder, "source.tif")
            make_source(source, size=SIZE, bands=3)
            local_cog = os.path.join(folder, "scene.tif")
            with rasterio.open(source) as src:
                cog.write_cog(src, local_cog)
            scene = files.join(root, "scene.tif")
            with open(local_cog, "rb") as cog_file:
                files.write_bytes(scene, cog_file.read())
            with files.gdal_env(scene):
                plan = pyramid.plan(scene)
            tiles = pyramid.tiles(plan)
            out = files.join(root, "tiles")

            def single():
                render_partition(scene, out, plan, tiles)

            baseline = median_seconds(single, repeat)

            os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
            from pyspark.sql import SparkSession

            master, _ = services.spark_urls()
            start = time.perf_counter()
            builder = (
                SparkSession.builder.master(master)
                .appName("bench-render-tiles")
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.driver.host", "127.0.0.1")
                .config("spark.driver.bindAddress", "127.0.0.1")
            )
            for key, value in executor_settings().items():
                builder = builder.config(f"spark.executorEnv.{key}", value)
            spark = builder.getOrCreate()
            spark.sparkContext.addPyFile(package_archive(folder))
            spark.sparkContext.parallelize([1, 2], 2).count()  # executors up
            startup = time.perf_counter() - start
            try:

                def on_cluster():
                    counts = render_pyramid(spark.sparkContext, scene, out, plan)
                    assert counts["tiles"] == len(tiles), counts
                    assert all(".zip" in path for path in counts["executor_code"]), counts

                ours = median_seconds(on_cluster, repeat)
            finally:
                spark.stop()
    finally:
        if started:
            services.stop(home, [services.SPARK])
        _delete_prefix(root)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        config.settings.cache_clear()
        clients.reset()
    count = len(tiles)
    yield row(
        f"render {count} tiles, Spark cluster (1 worker, 2 cores), S3->S3: "
        f"{count / ours:,.0f} tiles/s ({baseline / ours:.2f}x)",
        ours,
        f"1 process, S3->S3: {count / baseline:,.0f} tiles/s",
        baseline,
    )
    yield row("Spark cluster application start-up", startup, "-", float("nan"))


def _delete_prefix(url):
    """Removes the benchmark's objects from the local store."""
    from rf_pipelines import clients, config
    from rf_pipelines.targets import files

    bucket, prefix = files.split_s3(url)
    s3 = clients.aws_client("s3", config.settings().s3_endpoint_url)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", ())]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
