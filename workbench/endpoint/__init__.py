"""Served endpoints: the OpenAI-compatible client, load profiles and the managed `mlx_lm.server`."""
