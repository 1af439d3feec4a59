"""Raster Foundry's imagery workflows as Luigi tasks."""

__version__ = "0.1.0"
