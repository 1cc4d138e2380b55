"""Training, split by role as mlx-lm's `tuner/`: `data` (batches), `losses`, `trainer` (the loop), `distill`."""
