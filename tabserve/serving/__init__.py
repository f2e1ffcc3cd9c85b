"""Serving: request bodies to answers. Decoding parses and checks bodies against the schema,
the predictor encodes records and scores them with the bundle's model in its fastest exact
form (`scorers`), and shapes the answers; the explainer gives each field's contribution.
Nothing here imports Flask or the training wing."""
