"""Chat templates: how a prompt or a list of chat messages becomes the tokens a model sees.

An instruct model (Qwen3, Llama-3 instruct) is tuned on prompts rendered with its chat
template; measuring it on raw text measures the wrong prompt lengths and the wrong
quality. Rendering goes through mlx-lm's own `TokenizerWrapper.apply_chat_template`
with `add_generation_prompt=True`, as `mlx_lm.generate` and `mlx_lm.server` do.

`chat` modes: `auto` renders messages with the template and leaves a raw prompt raw;
`on` also wraps a raw prompt as one user message; `off` never uses a template (messages
are then an error). A model without a template given messages is an error, never a
silent join of the contents.
"""

from __future__ import annotations

from workbench.errors import ConfigError, DataError

CHAT_MODES = ("auto", "on", "off")


def check_chat_mode(chat: str) -> str:
    if chat not in CHAT_MODES:
        raise ConfigError(f"chat must be one of {', '.join(CHAT_MODES)}, got {chat!r}")
    return chat


def has_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "has_chat_template", False))


def render(tokenizer, *, prompt: str | None = None, messages: list[dict] | None = None, chat: str = "auto"):
    """Token ids of one prompt and whether a chat template was applied.

    Exactly one of `prompt` (raw text) and `messages` (`[{"role", "content"}, ...]`) is given.
    """
    check_chat_mode(chat)
    if (prompt is None) == (messages is None):
        raise ValueError("render takes exactly one of prompt and messages")
    if messages is None and chat == "on":
        messages = [{"role": "user", "content": prompt}]
    if messages is None:
        return list(tokenizer.encode(prompt)), False
    if chat == "off":
        raise DataError("chat messages given with chat 'off': use chat 'auto' or 'on', or give a raw prompt")
    if not has_template(tokenizer):
        raise DataError("the model's tokenizer has no chat template, so chat messages cannot be rendered")
    ids = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True)
    return [int(t) for t in ids], True


def local_tokenizer(spec: str):
    """The tokenizer of a preset or a local model directory, loaded without the weights (mlx-lm's
    `load_tokenizer`), to check prompts before anything runs; None for a Hugging Face id or an unbuilt preset."""
    from pathlib import Path

    from mlx_lm.utils import load_tokenizer

    from workbench.models import loader

    target, _ = loader.resolve(spec, build_missing=False)
    if not isinstance(target, Path) or not (target / "config.json").is_file():
        return None
    return load_tokenizer(target)


def local_context(spec: str) -> int | None:
    """The context (`max_position_embeddings`) of a preset or a local model directory; None when not known here."""
    import json
    from pathlib import Path

    from workbench.models import loader

    target, _ = loader.resolve(spec, build_missing=False)
    config = target / "config.json" if isinstance(target, Path) else None
    if config is None or not config.is_file():
        return None
    try:
        values = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    context = values.get("max_position_embeddings") or (values.get("text_config") or {}).get("max_position_embeddings")
    return context if isinstance(context, int) and context > 0 else None
