"""tabserve: train a classifier from any CSV and serve it as a JSON API."""
