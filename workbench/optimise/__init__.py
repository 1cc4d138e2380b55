"""What changes a model or a schedule: the optimisations an experiment applies.

- `quantise`: weight quantisation (affine, mixed recipes, GPTQ, AWQ), built once and cached;
- `derived`: model specs derived from the model under test (`quantised:BITS`, `distilled`);
- `continuous_batching`: a scheduler over mlx-lm's `BatchGenerator`, fed by an arrival process.
"""

__all__ = ["continuous_batching", "derived", "quantise"]
