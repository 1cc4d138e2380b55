import polars as pl
import pytest

from workbench.results import store


def _frame(run_id):
    rows = [
        {"kind": "speed", "trial": 0, "request_index": i, "ttft_s": 0.1 * i, "itl_s": [0.01, 0.02]} for i in range(3)
    ]
    return store.to_frame(
        rows,
        run_id=run_id,
        experiment="bench",
        variant="baseline",
        model_id="m",
        model_hash="h",
        backend="cpu",
        blas="b",
        workload="w",
        workload_hash="wh",
        params_json={"a": 1},
    )


def test_schema_and_round_trip(tmp_path):
    frame = _frame("r1")
    assert list(frame.columns) == list(store.SCHEMA)
    run_dir = store.write_run(frame, params={"a": 1}, env={"backend": "cpu"}, run_dir=tmp_path / "r1")
    assert sorted(p.name for p in run_dir.iterdir()) == ["env.json", "manifest.json", "params.yaml", "results.parquet"]
    back = pl.read_parquet(run_dir / "results.parquet")
    assert back.equals(frame)


def test_load_across_runs(tmp_path):
    for run in ("r1", "r2"):
        store.write_run(_frame(run), params={}, env={}, run_dir=tmp_path / run)
    lazy = store.load(root=tmp_path)
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().group_by("run_id").len().sort("run_id")["len"].to_list() == [3, 3]
    assert store.load("r2", root=tmp_path).collect().height == 3
    with pytest.raises(FileNotFoundError):
        store.load("r9", root=tmp_path)


def test_unknown_identity_and_kind_are_rejected():
    with pytest.raises(ValueError):
        store.to_frame([], colour="red")
    with pytest.raises(ValueError):
        store.to_frame([{"kind": "vibes"}])


def test_a_failed_write_leaves_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "results.parquet"
    store.write_parquet(_frame("old"), target)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        store.write_parquet(_frame("new"), target)
    assert pl.read_parquet(target)["run_id"][0] == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.parquet"]
