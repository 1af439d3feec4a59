"""Luigi tasks, one module per workflow; importing this registers them all.

``luigi --module rf_pipelines.tasks TaskName ...`` finds every task through this module.
"""

from rf_pipelines.tasks.demo import DescribeRaster, RegisterRaster

__all__ = ["DescribeRaster", "RegisterRaster"]
