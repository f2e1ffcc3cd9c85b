"""Training: reading CSVs, inferring the schema, the model search, calibration and threshold
choice, the run that ties them together, and the report. pandas lives here; nothing here
imports Flask or the web wing."""
