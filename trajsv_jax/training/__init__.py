"""Training: losses, variants, sharding, checkpoints, metrics, the loop and its trainers."""
