"""The data layer: field geometry, clips, the trajectory store, provider ingest, tokenization."""
