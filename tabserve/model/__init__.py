"""The contract and the artefact: the input schema and its validation, the encoder, the blend,
the decision rule and the bundle that holds them. No pandas at import, no Flask, nothing of
training or serving: every other wing builds on this one."""
