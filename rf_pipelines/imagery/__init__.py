"""Pure raster and metadata code (rasterio, shapely); never imports luigi."""
