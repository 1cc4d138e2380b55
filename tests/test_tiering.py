"""The tiering experiment on nano; `small` is what every generic test (tests/test_experiments.py,
tests/test_notebooks.py) overrides to run it in seconds."""

from test_experiments import run_small

from workbench.analysis import run_summary


def small(nano: str) -> dict:
    return {"requests": 4, "tiers": {"fast": nano, "balanced": "quantised:4", "complex": nano}}


def test_tiering_measures_task_accuracy_per_tier_and_overall(nano_path):
    frame = run_small("tiering", str(nano_path), tier_thresholds=[0, 10_000])
    summary = {s["variant"]: s for s in run_summary.variant_summaries("tiering", frame)}
    tiered = summary["tiered"]
    assert tiered["family"] == "tiering" and tiered["task_accuracy"] is not None
    assert set(tiered["task_accuracy_by_tier"]) == {"balanced"}  # every prompt is under the second threshold
    assert set(summary["baseline"]["task_accuracy_by_tier"]) == {"complex"}
