"""Bottom layer: the record schema (rows, timings, validation) and the record store."""
