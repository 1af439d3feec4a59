# One image for the luigid scheduler and the workers. GDAL comes inside the rasterio wheel;
# Java is for Spark (pyspark) jobs. Credentials come from the environment or an IAM role.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY setup.py README.md luigi.cfg ./
COPY docker ./docker
COPY rf_pipelines ./rf_pipelines
RUN pip install --no-cache-dir .

ENV LUIGI_CONFIG_PATH=/app/luigi.cfg \
    PYTHONUNBUFFERED=1 \
    JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64

RUN useradd --create-home --uid 1000 rf && mkdir -p /var/lib/luigid /var/lib/rf \
 && chown rf /var/lib/luigid /var/lib/rf
USER rf

# Worker (default): run one task tree, e.g.
#   docker run IMAGE luigi --module rf_pipelines.tasks RegisterRaster --path s3://bucket/a.tif
# Scheduler: inside a container it must listen on the container's interface:
#   docker run -p 127.0.0.1:8082:8082 IMAGE rf-pipelines scheduler --address 0.0.0.0
# docker-compose.yml beside this file runs luigid, a worker, PostgreSQL and MinIO.
EXPOSE 8082
CMD ["rf-pipelines", "--help"]
