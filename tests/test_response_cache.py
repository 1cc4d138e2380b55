"""The response_cache experiment on nano; `small` is what every generic test (tests/test_experiments.py,
tests/test_notebooks.py) overrides to run it in seconds."""

from test_experiments import run_small

from workbench.analysis import run_summary


def small(nano: str) -> dict:
    return {"unique_queries": 4, "requests": 8}


def test_response_cache_hits_and_keeps_answers(nano_path):
    frame = run_small("response_cache", str(nano_path))
    summary = {s["variant"]: s for s in run_summary.variant_summaries("response_cache", frame)}
    cached = summary["response-cache"]
    assert cached["family"] == "response-cache" and cached["hit_rate"] > 0
    assert cached["task_accuracy"] == summary["baseline"]["task_accuracy"]  # the same answers, served again
    assert cached["throughput_tps"] > 0 and cached["generated_tokens"] == summary["baseline"]["generated_tokens"]


def test_the_old_name_serving_still_finds_the_experiment():
    """Rows and sweep files from before the rename store `serving`: it maps to `response_cache`."""
    from workbench import experiments

    assert experiments.get("serving") is experiments.get("response_cache")
    assert experiments.build_config("serving", None, {"model": "nano"}).name == "response_cache"
