"""rsir: content-based retrieval of multi-spectral satellite imagery."""

__version__ = "0.2.0"
