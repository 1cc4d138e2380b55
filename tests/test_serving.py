"""The serving experiment on nano; `small` is what every generic test (tests/test_experiments.py,
tests/test_notebooks.py) overrides to run it in seconds."""


def small(nano: str) -> dict:
    return {
        "unique_queries": 4,
        "requests": 8,
        "tiering_requests": 4,
        "tiers": {"fast": nano, "balanced": nano, "complex": nano},
    }


def test_tiering_reports_task_accuracy_per_tier_and_overall(nano_path):
    from test_experiments import run_small

    from workbench import experiments

    frame = run_small("serving", str(nano_path), tier_thresholds=[0, 10_000])
    summary = {s["variant"]: s for s in experiments.variant_summaries("serving", frame)}
    tiered = summary["tiered"]
    assert tiered["family"] == "tiering" and tiered["task_accuracy"] is not None
    assert set(tiered["task_accuracy_by_tier"]) == {"balanced"}  # every prompt is under the second threshold
    assert summary["response-cache"]["hit_rate"] > 0
