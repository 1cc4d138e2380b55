"""The distill experiment on nano; `small` is what every generic test (tests/test_experiments.py,
tests/test_notebooks.py) overrides to run it in seconds."""


def small(nano: str) -> dict:
    return {"student": "nano", "steps": 4}
