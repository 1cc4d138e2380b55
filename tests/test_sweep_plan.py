"""`workbench sweep FILE --plan`: a short A/A pilot of the first point's baseline (real nano), then per point the
rounds and minutes its precision will take; an exact `rounds` count is planned as that count; nothing is run
or written under the sweep's folder."""

import math

import yaml

from workbench.sweep import plan as planning
from workbench.sweep import runner

SWEEP = {
    "name": "planned",
    "experiment": "tradeoff",
    "fixed": {"model": "nano", "prompt_tokens": 16, "gen_tokens": 8, "requests": 2, "trials": 1, "max_rounds": 30},
    "points": [{"precision": 0.05}, {"precision": 0.02, "batch_size": 2}, {"rounds": 4, "batch_size": 2}],
}


def test_plan_runs_a_pilot_and_prints_rounds_and_minutes_per_point(tmp_path, nano_path, _outputs, capsys):
    path = tmp_path / "planned.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    assert runner.main([str(path), "--plan", "--pilot-rounds", "3", "--json"]) == 0
    out = yaml.safe_load(capsys.readouterr().out.strip().splitlines()[-1])
    loose, tight, exact = out["plan"]
    assert all(math.isfinite(p["sd_log"]) and p["minutes"] > 0 and p["basis"].startswith("pilot") for p in out["plan"])
    assert 3 <= loose["rounds"] <= tight["rounds"] <= 30  # a tighter target needs at least as many rounds
    assert exact["rounds"] == 4 and exact["precision_pct"] is None and exact["expected_half_width_pct"] > 0
    assert not (_outputs / "sweeps" / "planned").exists()


def test_rounds_for_matches_the_half_width_it_promises():
    for sd in (0.02, 0.1, 0.3):
        n = planning.stats.rounds_for(sd, 0.05)
        assert planning._half_width(sd, n) <= 5.0 + 1e-9 < planning._half_width(sd, n - 1) or n == 3
