"""Drift offline: a file compared with a model's reference profile (`monitor.py`), and the
plots of distributions that the model card shares."""
