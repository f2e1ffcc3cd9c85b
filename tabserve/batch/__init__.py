"""The batch wing: scoring rows from files (`score.py`) and Spark DataFrames (`tabserve.spark`)
with the service's own validator (`model.validation`) and serving core (`serving.core`).
It may import model, serving, pandas and pyarrow, and training's CSV reader (the same rules
for a file's header and its missing cells); never the web wing."""
