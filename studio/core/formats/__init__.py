"""Image files and what other tools read: metadata, layered OpenRaster/PSD, contact sheets."""
