"""tabserve: train a classifier from any CSV and serve it as a JSON API."""

__version__ = "0.1.0"
