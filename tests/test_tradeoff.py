"""The tradeoff experiment on nano; `small` is what every generic test (tests/test_experiments.py,
tests/test_notebooks.py) overrides to run it in seconds."""


def small(nano: str) -> dict:
    return {"bits": 4, "batch_size": 2}


def test_a_point_with_the_baseline_settings_is_an_aa_check(nano_path):
    from test_experiments import run_small

    from workbench.analysis import run_summary

    frame = run_small("tradeoff", str(nano_path), bits=None, batch_size=1)
    summary = {s["variant"]: s for s in run_summary.variant_summaries("tradeoff", frame)}
    assert set(summary) == {"baseline", "fp-b1-aa"}
    assert summary["fp-b1-aa"]["family"] == "baseline" and summary["fp-b1-aa"]["changes"] == {}
    assert summary["fp-b1-aa"]["identical_to_baseline"] is True
