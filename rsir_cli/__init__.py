"""rsir: content-based retrieval of multi-spectral satellite imagery."""

__version__ = "0.3.0"
