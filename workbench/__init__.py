"""Chimera Workbench: measure what an optimisation does to an MLX model's speed and quality."""

__version__ = "0.1.0"
