"""The prompt_cache experiment on nano; `small` is what every generic test (tests/test_experiments.py,
tests/test_notebooks.py) overrides to run it in seconds."""


def small(nano: str) -> dict:
    return {"prefix_tokens": 64, "requests": 3}
