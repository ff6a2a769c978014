"""Loaders for the small real data sets in the shared data directory (read in place, never copied)."""

from adsim.datasets.amazon_industrial import AmazonIndustrial, load_amazon_industrial

__all__ = ["AmazonIndustrial", "load_amazon_industrial"]
