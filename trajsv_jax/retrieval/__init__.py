"""Retrieval: embedding runs, the ScaNN index, search, the paper's protocol and studies."""
