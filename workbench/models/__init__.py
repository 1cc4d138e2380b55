"""The model under test and where it comes from: the only folder that resolves, loads, builds or caches models.

- `loader`: `resolve` (a preset, a local mlx-lm directory or a Hugging Face id), `load` (`LoadedModel`, compute
  dtype), fingerprints, tokenizers, sizes;
- `build`: the embedded family's recipes (`nano`, `default`, `student`), its BPE tokenizer and training run;
- `assets`: committed weights (`weights/`), used when their recipe hash matches.
"""

__all__ = ["assets", "build", "loader"]
