"""Bottom layer: atomic writes, verified and bounded downloads, safe extraction, data and cache
roots, progress bars."""
