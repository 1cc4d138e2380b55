"""The quantise experiment on nano; `small` is what every generic test (tests/test_experiments.py,
tests/test_notebooks.py) overrides to run it in seconds."""

from test_experiments import run_small

from workbench.analysis import run_summary


def small(nano: str) -> dict:
    return {"variants": [{"bits": 4}, {"bits": 2}], "kv_bits": []}


def test_quantisation_moves_quality_and_bits(nano_path):
    frame = run_small("quantise", str(nano_path))
    summary = {s["variant"]: s for s in run_summary.variant_summaries("quantise", frame)}
    assert summary["baseline"]["bits_per_weight"] == 32
    assert summary["q2"]["bits_per_weight"] < summary["q4"]["bits_per_weight"] < 32
    assert summary["q2"]["kl_mean"] > summary["q4"]["kl_mean"] > 0
    assert summary["q2"]["size_on_disk_bytes"] < summary["q4"]["size_on_disk_bytes"]


def test_kv_cache_variants_get_quality_measured_with_the_quantised_cache():
    """KV quantisation changes outputs, so its quality is measured, never inherited (default: head_dim 32)."""
    frame = run_small("quantise", "default", variants=[], kv_bits=[4], perplexity_chunks=2, task_count=4)
    kv = frame.filter(variant="kv4")
    assert set(kv["family"]) == {"kv-quantisation"}
    assert set(kv.filter(kind="perplexity")["quality_measured"]) == {"perplexity,task,fidelity"}
    summary = {s["variant"]: s for s in run_summary.variant_summaries("quantise", frame)}
    assert summary["kv4"]["perplexity"] is not None and summary["kv4"]["kl_mean"] > 0
    assert summary["kv4"]["perplexity"] != summary["baseline"]["perplexity"]
