"""Codecs: each door's translation of the serving core's `Scored` (`serving.core`) into its
own form. JSON for /predict and /explain, v2 tensors for the Open Inference Protocol, named
columns for score.py's files and Spark's DataFrames. A new transport is a new codec here."""
