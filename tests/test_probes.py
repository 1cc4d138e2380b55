"""Fidelity probes: references carry the model fingerprint and dtype and a mismatch is refused; the coarsened KL
is exact on the full vocabulary and a lower bound on a top-k; probes sit among the measured requests, never
first, and against nano behind a real mlx_lm.server they are rows of their own, not in the latency figures."""

import numpy as np
import polars as pl
import pytest
from test_experiments import run_small

from workbench.endpoint import probes
from workbench.endpoint.levels import level_summaries
from workbench.errors import ConfigError
from workbench.models import loader
from workbench.present import endpoint_section, endpoint_tables


@pytest.fixture(scope="module")
def references(nano_path):
    loaded = loader.load(str(nano_path), dtype="float32")
    texts = ["the time of the year", "a world of people"]
    return loaded, probes.build_references(loaded, texts, max_tokens=5)


def test_references_carry_model_and_dtype_and_a_mismatch_is_refused(references):
    loaded, refs = references
    assert all(r.model_hash == loaded.model_hash and r.dtype == "float32" and len(r.tokens) == 5 for r in refs)
    probes.check_references(refs, model_hash=loaded.model_hash, dtype="float32")
    with pytest.raises(ConfigError, match="in float32, but the served model is .* in bfloat16"):
        probes.check_references(refs, model_hash=loaded.model_hash, dtype="bfloat16")
    with pytest.raises(ConfigError, match="same model and dtype"):
        probes.check_references(refs, model_hash="0" * 16, dtype="float32")
    other = loader.load(str(loaded.path), dtype="bfloat16")
    assert probes.build_references(other, [refs[0].prompt], max_tokens=5)[0].dtype == "bfloat16"


def test_scoring_finds_the_first_divergence_and_a_zero_kl_for_the_reference_itself(references):
    loaded, refs = references
    ref = refs[0]
    log_p = probes.served_log_probs(loaded.model, ref, ref.tokens)
    top = [dict(zip(map(int, np.argsort(-row)[:10]), map(float, np.sort(row)[::-1][:10]))) for row in log_p]
    assert [max(t, key=t.get) for t in top] == ref.tokens, "the reference is the greedy continuation"
    same = probes.ProbeReply(t0=0.0, end=1.0, ok=True, tokens=list(ref.tokens), top=top)
    row = probes.score(same, ref, loaded.model)
    assert row["identical"] and row["first_divergence"] == -1 and row["kl_mean"] == pytest.approx(0, abs=1e-9)
    changed = list(ref.tokens)
    changed[3] = (changed[3] + 1) % 2048
    row = probes.score(probes.ProbeReply(t0=0.0, end=1.0, ok=True, tokens=changed), ref)
    assert not row["identical"] and row["first_divergence"] == 3 and "kl_mean" not in row


def test_coarse_kl_is_exact_on_the_full_vocabulary_and_a_lower_bound_on_top_k():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(50)), rng.dirichlet(np.ones(50))
    full = float(np.sum(p * np.log(p / q)))
    everything = dict(enumerate(np.log(q)))
    assert probes.coarse_kl(np.log(p), everything) == pytest.approx(full)
    top = {int(i): float(np.log(q[i])) for i in np.argsort(-q)[:10]}
    assert 0 <= probes.coarse_kl(np.log(p), top) <= full


def test_mix_spreads_probes_and_never_sends_one_first():
    sent, where = probes.mix(list("abcdefgh"), ["P1", "P2"])
    assert sent[0] == "a" and sorted(p for p in sent if p.startswith("P")) == ["P1", "P2"]
    assert [w for w in where if w >= 0] == list(range(8)) and where.count(-1) == 2
    assert probes.mix(["a"], ["P"])[0] == ["a", "P"]


def test_probes_under_load_are_rows_of_their_own(nano_path):
    frame = run_small("endpoint", str(nano_path), levels=[1, 3], requests=6, probe_share=0.34, gen_tokens=8)
    speed = frame.filter(pl.col("kind") == "speed")
    probe = frame.filter(pl.col("kind") == "probe")
    served = speed.filter(pl.col("variant") != "baseline")
    assert (
        served.group_by("variant", "round").len()["len"].to_list() == [6] * served.select("variant", "round").n_unique()
    )
    assert set(probe["variant"]) == {"served-c1", "served-c3"} and probe.height == 2 * 2 * 3  # levels x rounds x probes
    assert probe["ok"].all() and (probe["positions"] == 8).all() and probe["kl_mean"].is_not_null().all()
    assert (probe.filter(variant="served-c3")["overlap_requests"] > 0).any()
    levels = {r["variant"]: r for r in level_summaries(frame).to_dicts()}
    assert levels["served-c1"]["probes"] == 6 and levels["served-c1"]["identical_share"] is not None
    assert levels["served-c1"]["requests"] == 12, "probes are not in the level's latency rows"
    assert levels["served-c1"]["identical_share"] == 1.0, "mlx_lm.server alone, default flags: the in-process tokens"
    table = endpoint_tables.endpoint_fidelity(endpoint_section.from_rows(frame)).as_raw_html()
    assert "100%" in table and "none diverged" in table and "mlx_lm.server defaults" in table


def test_probe_share_needs_a_server_this_run_starts():
    from workbench import experiments

    with pytest.raises(ConfigError, match="probe_share"):
        experiments.build_config("endpoint", None, {"target": "http://127.0.0.1:9", "probe_share": 0.5})
