"""Targets: local and S3 files by URL, bulk completeness, Postgres markers."""

from rf_pipelines.targets.bulk import existing
from rf_pipelines.targets.files import is_s3, join, output_url, split_s3, target_for
from rf_pipelines.targets.postgres import MarkerTarget, UploadStatusTarget

__all__ = [
    "MarkerTarget",
    "UploadStatusTarget",
    "existing",
    "is_s3",
    "join",
    "output_url",
    "split_s3",
    "target_for",
]
