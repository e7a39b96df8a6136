"""dpshare: differentially private GANs for privacy-preserving data sharing."""

__version__ = "0.1.0"
