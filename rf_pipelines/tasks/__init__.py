"""Luigi tasks, one module per workflow; importing this registers them all.

``luigi --module rf_pipelines.tasks TaskName ...`` finds every task through this module.
"""

from rf_pipelines.tasks.demo import DescribeRaster, RegisterRaster
from rf_pipelines.tasks.geoparquet import ImportGeoparquet
from rf_pipelines.tasks.imports import DiscoverDay, ImportBatch, ImportDay
from rf_pipelines.tasks.ingest import IngestScene, RenderTiles, SceneCog
from rf_pipelines.tasks.uploads import (
    ConvertToCog,
    DescribeBands,
    MakeFootprints,
    MakeThumbnails,
    ProcessUpload,
    RegisterUploadScene,
    UploadBatch,
    ValidateUploadFile,
    WriteStacItem,
)

__all__ = [
    "ConvertToCog",
    "DescribeBands",
    "DescribeRaster",
    "DiscoverDay",
    "ImportBatch",
    "ImportDay",
    "ImportGeoparquet",
    "IngestScene",
    "MakeFootprints",
    "MakeThumbnails",
    "ProcessUpload",
    "RegisterRaster",
    "RegisterUploadScene",
    "RenderTiles",
    "SceneCog",
    "UploadBatch",
    "ValidateUploadFile",
    "WriteStacItem",
]
