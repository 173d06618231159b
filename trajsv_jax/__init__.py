"""trajsv-jax: TrajSV sports-video representations from player and ball trajectories, in JAX/Flax."""

__version__ = "0.1.0"
