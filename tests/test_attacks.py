"""Issue 12's attacks, one test per class: corrupt points, Ctrl-C, two runs of one sweep, stale points, hostile
names, unbounded inputs, an unwritable outputs folder, a write failure after measuring, and strict JSON.
(Report artefacts beside a user's files and HTML names: tests/test_report.py::
test_report_against_an_earlier_sweep_keeps_user_files and ::test_report_escapes_names_from_the_rows.)"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import polars as pl
import psutil
import pytest
import yaml

from workbench import console
from workbench.paths import REPO_ROOT, OutputsError, check_writable
from workbench.present import report
from workbench.results import integrity, store
from workbench.sweep import guard, runner

SMOKE = yaml.safe_load((REPO_ROOT / "params" / "smoke.yaml").read_text())
TWO = {"variants": [[{"bits": 8}], [{"bits": 4}]]}
# smoke's experiment with the least work per point, for tests of control flow (no number of theirs is shown)
QUICK = {
    **SMOKE["fixed"],
    **{"prompt_tokens": 8, "gen_tokens": 4, "perplexity_chunks": 0, "task_count": 0, "fidelity_count": 0},
}


def write_sweep(directory, name, **changes):
    spec = {**SMOKE, "name": name, **changes}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def cli(*args, outputs, **kwargs):
    env = {**os.environ, "WORKBENCH_OUTPUTS": str(outputs)}
    command = [sys.executable, "-m", "workbench.cli", *args]
    if kwargs.pop("background", False):
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def strict_json(line: str):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


@pytest.fixture
def smoke(smoke_sweep_outputs, _outputs):
    """A copy of the session's finished three-point smoke sweep (`params/smoke.yaml`, run once for real)."""
    shutil.copytree(smoke_sweep_outputs, _outputs)
    return _outputs / "sweeps" / "smoke"


def test_corrupt_point_is_named_left_out_and_rerun(smoke, capsys):
    first, *others = sorted(p for p in smoke.iterdir() if p.is_dir())
    parquet = first / "results.parquet"
    parquet.write_bytes(parquet.read_bytes()[: parquet.stat().st_size // 2])  # truncated, same name
    (smoke / "notes.txt").write_text("mine")
    (smoke / "empty").mkdir()
    assert integrity.point_problem(first) and len(others) == 2
    assert all(integrity.point_problem(other) is None for other in others)

    kept = sorted(other.name for other in others)
    frame = store.load_sweep_results("smoke").collect()
    assert sorted(frame["point_id"].unique().to_list()) == kept
    err = capsys.readouterr().err
    assert f"point {first.name} left out" in err and "stray file notes.txt" in err and "stray folder empty/" in err
    assert sorted(report.load("smoke")[0]["point_id"].unique().to_list()) == kept
    assert report.failures("smoke") == (1, 3)
    listed = cli("sweeps", outputs=smoke.parent.parent)
    assert listed.returncode == 0 and f"bad point {first.name}" in listed.stdout, listed.stdout + listed.stderr

    proc = cli("sweep", integrity.read_sweep_record(smoke)["file"], "--json", outputs=smoke.parent.parent)
    assert proc.returncode == 0, proc.stderr
    summary = strict_json(proc.stdout.splitlines()[-1])
    assert (summary["ran"], summary["skipped"], list(summary["rerun_points"])) == (1, 2, [first.name])
    assert f"re-running 1 points that fail verification: {first.name}" in proc.stderr
    assert integrity.point_problem(first) is None


def test_first_sigint_finishes_the_running_point_prints_the_summary_and_exits_130(tmp_path, nano_path, kernel):
    path = write_sweep(tmp_path, "ctrlc", fixed=QUICK, grid=TWO)
    outputs = tmp_path / "outputs"
    proc = cli("sweep", str(path), outputs=outputs, background=True)
    root = outputs / "sweeps" / "ctrlc"
    deadline = time.time() + 120
    while time.time() < deadline and not list(root.glob("*/point.yaml")):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    sent = time.time()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert time.time() - sent < 60  # one point's time
    table = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    assert (table["ran"], table["interrupted"], table["remaining"]) == ("1", "0", "1"), out
    assert err.strip().splitlines()[-1].startswith("workbench: interrupted: 1 points not finished")
    assert "Traceback" not in err

    resumed = cli("sweep", str(path), "--json", outputs=outputs)
    summary = strict_json(resumed.stdout.splitlines()[-1])
    assert (resumed.returncode, summary["ran"], summary["skipped"]) == (0, 1, 1), resumed.stderr
    runs = store.load_sweep_results("ctrlc").collect().group_by("point_id").agg(pl.col("run_id").n_unique())
    assert runs["run_id"].to_list() == [1, 1]


def test_second_sigint_kills_the_kernel_at_once(tmp_path, nano_path, kernel):
    path = write_sweep(tmp_path, "abort", grid={"variants": [[{"bits": 8}]]})
    proc = cli("sweep", str(path), outputs=tmp_path / "outputs", background=True)
    deadline, kernels = time.time() + 120, []
    while time.time() < deadline and not kernels:
        kernels = [c.pid for c in psutil.Process(proc.pid).children() if "ipykernel" in " ".join(c.cmdline())]
        time.sleep(0.1)
    assert kernels
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    table = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    assert table["interrupted"] == "1" and "Traceback" not in err, out + err
    for pid in kernels:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not list((tmp_path / "outputs" / "sweeps" / "abort").glob("*/error.json"))


def test_second_run_of_a_sweep_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path, _outputs):
    path = write_sweep(tmp_path, "locked", grid={"variants": [[{"bits": 8}]]})
    root = _outputs / "sweeps" / "locked"
    with guard.hold(root):
        proc = cli("sweep", str(path), "--prepare-only", outputs=_outputs)
    assert proc.returncode == 2 and f"pid {os.getpid()}" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

    holder = subprocess.Popen(
        [sys.executable, "-c", f"from workbench.sweep import guard\nwith guard.hold({str(root)!r}): input()"],
        stdin=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    while not (root / guard.OWNER).is_file() or (root / guard.OWNER).read_text().strip() != str(holder.pid):
        time.sleep(0.05)
    holder.kill()  # SIGKILL: no clean-up, the PID file stays
    holder.wait()
    proc = cli("sweep", str(path), "--prepare-only", outputs=_outputs)
    assert proc.returncode == 0, proc.stderr
    assert f"took over the lock of pid {holder.pid}" in proc.stderr


def test_points_no_longer_in_the_sweep_file_are_stale_and_left_out(smoke, tmp_path, capsys):
    kept = runner.point_id({**SMOKE["fixed"], "variants": [{"bits": 8}]})
    path = write_sweep(tmp_path, "smoke", grid={"variants": [[{"bits": 8}]]})
    proc = cli("sweep", str(path), "--json", outputs=smoke.parent.parent)
    assert proc.returncode == 0 and "2 points under" in proc.stderr and "stale" in proc.stderr, proc.stderr
    assert strict_json(proc.stdout.splitlines()[-1])["skipped"] == 1
    assert store.load_sweep_results("smoke").collect()["point_id"].unique().to_list() == [kept]
    assert "2 stale points, not in the current sweep file, left out" in capsys.readouterr().err
    assert store.load_sweep_results("smoke", include_stale=True).collect()["point_id"].n_unique() == 3
    assert report.failures("smoke") == (0, 1) and report.point_conditions("smoke").height == 1
    assert "stale    2" in cli("sweeps", outputs=smoke.parent.parent).stdout
    assert console.entry(report.main, ["smoke", "-o", str(tmp_path / "all.html"), "--include-stale", "--json"]) == 0
    out, err = capsys.readouterr()
    assert strict_json(out.splitlines()[-1])["points"] == 3 and "2 stale points" in err and "included" in err


@pytest.mark.parametrize(
    "stem, name",
    [
        ("up", "../../x"),
        ("abs", "/tmp/x"),
        ("html", '<img src=x onerror="alert(1)">'),
        ("dotted", "a.b"),
        ("number", 12),
        ("<img src=x>", None),
    ],
)
def test_sweep_names_are_plain_slugs(tmp_path, _outputs, capsys, stem, name):
    path = tmp_path / f"{stem}.yaml"
    path.write_text(yaml.safe_dump({**SMOKE, "name": name}))
    assert console.entry(runner.main, [str(path), "--prepare-only"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and f"{path}:name:" in line, line
    assert not _outputs.exists() and not (tmp_path.parent / "x").exists()


BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_yaml_alias_bomb_deep_nesting_and_bad_files_are_refused_fast_and_small(tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    probe = textwrap.dedent(f"""
        import resource, time
        from workbench.errors import SweepError
        from workbench.sweep.spec import load_sweep
        try:  # once untimed: the modules it imports lazily (compiled cold on a fresh clone) are not the refusal
            load_sweep({str(bomb)!r})
        except SweepError:
            pass
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        try:
            load_sweep({str(bomb)!r})
        except SweepError as exc:
            print(exc)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(time.perf_counter() - start, grown * 1024)
        """)
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    message, measured = proc.stdout.strip().splitlines()
    seconds, grown_bytes = map(float, measured.split())
    assert "aliases expand to more than" in message and len(message) < 300, message
    assert seconds < 2 and grown_bytes < 200e6, measured

    (tmp_path / "deep.yaml").write_text("a: " + "[" * 5000 + "]" * 5000)
    (tmp_path / "latin.yaml").write_bytes(b"name: caf\xe9\n")
    (tmp_path / "folder.yaml").mkdir()
    for name, problem in [("deep", "nested deeper than"), ("latin", "not UTF-8"), ("folder", "is a directory")]:
        assert console.entry(runner.main, [str(tmp_path / f"{name}.yaml")]) == 2
        line = capsys.readouterr().err.strip()
        assert "\n" not in line and f"{tmp_path / name}.yaml: {problem}" in line, line


def test_million_point_grid_is_refused_fast_and_max_points_lifts_the_cap(tmp_path, capsys):
    path = write_sweep(tmp_path, "huge", grid={"seed": list(range(1000)), "trials": list(range(1, 1001))})
    start = time.perf_counter()
    assert console.entry(runner.main, [str(path)]) == 2
    assert time.perf_counter() - start < 2
    assert ":grid: more than 10000 points (1000000)" in capsys.readouterr().err

    three = write_sweep(tmp_path, "three")
    assert console.entry(runner.main, [str(three), "--max-points", "2"]) == 2
    assert "more than 2 points" in capsys.readouterr().err
    assert len(runner.load_sweep(three, max_points=3).points) == 3


def test_unwritable_outputs_exit_2_before_anything_is_measured(tmp_path, nano_path, monkeypatch, capsys):
    from workbench import experiments

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for outputs in (blocker, blocker / "below"):
        start = time.perf_counter()
        proc = cli("sweep", str(REPO_ROOT / "params" / "smoke.yaml"), outputs=outputs)
        assert proc.returncode == 2 and "outputs cannot be written here" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and time.perf_counter() - start < 60

    def measured(config):
        raise AssertionError("measured before the outputs folder was checked")

    monkeypatch.setattr(experiments.get("quantise"), "run", measured)
    config = experiments.build_config("quantise", None, {"model": "nano"})
    with pytest.raises(OutputsError, match="outputs cannot be written"):
        experiments.run_and_save(config, blocker / "run")
    monkeypatch.setenv("WORKBENCH_OUTPUTS", str(blocker))
    with pytest.raises(OutputsError, match="outputs cannot be written"):
        experiments.run_and_save(config)
    with pytest.raises(OutputsError, match="MiB free"):
        check_writable(tmp_path / "ok", need_bytes=1 << 60)
    if os.geteuid() != 0:  # root writes through permissions; the file cases above cover it
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with pytest.raises(OutputsError, match="outputs cannot be written"):
            check_writable(locked)


def test_a_write_failure_after_measuring_keeps_the_rows_and_names_them(tmp_path):
    frame = store.to_frame([{"kind": "speed", "ttft_s": 0.5}], run_id="run-rescue", experiment="bench")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OutputsError) as caught:
        store.write_run(frame, params={"x": 1}, env={}, run_dir=blocker / "run")
    kept = str(caught.value).rsplit(" ", 1)[-1]
    assert "\n" not in str(caught.value) and kept.endswith("results.parquet")
    assert pl.read_parquet(kept).equals(frame)
    shutil.rmtree(os.path.dirname(kept))


def test_every_commands_json_is_strict_json(smoke, tmp_path, nano_path, capsys):
    from workbench import doctor, run
    from workbench.measure import bench, evaluate

    params = tmp_path / "quantise.yaml"
    tiny = {k: v for k, v in SMOKE["fixed"].items()}
    params.write_text(yaml.safe_dump({**tiny, "variants": [{"bits": 8}]}))
    text = tmp_path / "text.txt"
    text.write_text("Plain English sentences about nothing in particular. " * 40)
    commands = [
        (doctor.main, []),
        (bench.main, ["--model", "nano", "--prompt-tokens", "8", "--gen-tokens", "4", "--trials", "1"]),
        (evaluate.main, ["--model", "nano", "--text", str(text), "--sequence-length", "32", "--max-chunks", "2"]),
        (run.main, ["quantise", "--params", str(params)]),
        (runner.main, [str(write_sweep(tmp_path, "prep", grid=TWO)), "--prepare-only"]),
        (report.main, ["smoke", "-o", str(tmp_path / "smoke.html")]),
    ]
    for main, args in commands:
        assert console.entry(main, [*args, "--json"]) == 0, capsys.readouterr().err
        strict_json(capsys.readouterr().out.strip().splitlines()[-1])
