"""Hostile data files and folders: a 200 MB one-line dataset, JSON nested 100,000 deep, a catastrophic regex,
eval items longer than the context, an lm-eval folder with code, a `serve --log` aimed at a README, a full disk
under the report, a symlinked point folder. Each is one line (exit 2) or one item scored 0, within its bounds."""

import errno
import json
import time

import pytest
from hostile_server import run_cli

from workbench import cli
from workbench.errors import DataError
from workbench.measure import evalsets, lm_eval_tasks, quality
from workbench.workloads import datasets

BIG = 200 << 20


def one_line_exit_2(done, *needles) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("workbench: error: ") and "Traceback" not in done.stderr, lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def write_big_line(path, *, size: int = BIG):
    with path.open("wb") as handle:
        handle.write(b'{"prompt": "')
        block = b"a" * (8 << 20)
        for _ in range(size // len(block)):
            handle.write(block)
        handle.write(b'"}\n')
    return path


@pytest.mark.parametrize("command", ["bench", "eval"])
def test_a_200_mb_single_line_file_is_one_line_in_under_10_s_and_1_gb(command, tmp_path, nano_path):
    data = write_big_line(tmp_path / "big.jsonl")
    if command == "bench":
        argv = ["bench", "--model", str(nano_path), "--dataset", str(data), "--no-save"]
    else:
        argv = ["eval", "--model", str(nano_path), "--eval-set", str(data), "--no-save"]
    done = run_cli(argv, outputs=tmp_path / "outputs", timeout_s=60)
    one_line_exit_2(done, "big.jsonl:1", "longer than 16 MiB")
    assert done.wall_s < 10 and done.peak_rss_bytes < 1 << 30, (done.wall_s, done.peak_rss_bytes)


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("deep.jsonl", b"[" * 100_000 + b"]" * 100_000 + b"\n"),
        ("deep.json", b"[" * 100_000 + b"]" * 100_000),
        ("deep_object.jsonl", b'{"prompt": "x", "meta": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001 + b"\n"),
    ],
)
def test_json_nested_100000_deep_is_one_line_in_under_10_s_and_1_gb(name, body, tmp_path, nano_path):
    path = tmp_path / name
    path.write_bytes(body)
    done = run_cli(["bench", "--model", str(nano_path), "--dataset", str(path), "--no-save"], outputs=tmp_path / "o")
    one_line_exit_2(done, name, "nested more than 64 levels deep")
    assert done.wall_s < 10 and done.peak_rss_bytes < 1 << 30, (done.wall_s, done.peak_rss_bytes)


def test_nesting_within_the_cap_still_reads(tmp_path):
    path = tmp_path / "ok.jsonl"
    path.write_text(json.dumps({"prompt": "x"}) + "\n" + json.dumps({"prompt": "y", "max_tokens": 2}) + "\n")
    items, _ = datasets.read_items(path)
    assert items == [{"prompt": "x"}, {"prompt": "y", "max_tokens": 2}]
    assert datasets.loads("[" * 64 + "]" * 64, "w") is not None
    with pytest.raises(DataError, match="nested more than 64"):
        datasets.loads("[" * 65 + "]" * 65, "w")


def test_a_prompt_longer_than_20_characters_per_context_token_is_refused_before_tokenizing(tmp_path, nano_path):
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"prompt": "b" * (20 * 4096 + 1)}) + "\n")  # nano's context is 4096 tokens
    done = run_cli(["bench", "--model", str(nano_path), "--dataset", str(path), "--no-save"], outputs=tmp_path / "o")
    one_line_exit_2(done, "long.jsonl: item 1", "81921 characters", "context of 4096 tokens")


def test_a_catastrophic_regex_on_a_10_kb_prediction_scores_0_in_under_5_s(nano, tmp_path, monkeypatch):
    prediction = "a" * 10_000 + "!"
    monkeypatch.setattr(quality, "generate_until", lambda *args, **kwargs: (prediction, 10))
    path = tmp_path / "evil.jsonl"
    items = [
        {"id": "evil", "prompt": "q", "reference": r"^(a+)+$", "metric": "regex"},
        {"id": "fine", "prompt": "q", "reference": r"a{3}!$", "metric": "regex"},
    ]
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    started = time.perf_counter()
    rows = evalsets.score_items(nano, evalsets.read_eval_set(path))
    assert time.perf_counter() - started < 5
    evil, fine = rows
    assert evil["score"] == 0.0 and evil["error"].startswith("scored 0: regex timed out after 0.5 s")
    assert fine["score"] == 1.0 and "error" not in fine


def test_eval_items_beyond_the_context_are_refused_before_anything_runs(tmp_path, nano_path):
    path = tmp_path / "long_items.jsonl"
    lines = [
        {"id": "short", "prompt": "2 + 2 =", "reference": "4"},
        {"id": "three-contexts", "prompt": "word " * (3 * 4096), "reference": "x"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = run_cli(["eval", "--model", str(nano_path), "--eval-set", str(path)], outputs=tmp_path / "outputs")
    one_line_exit_2(done, "item 'three-contexts'", "exceed the model's context of 4096")
    assert not (tmp_path / "outputs").exists()  # nothing ran, nothing was written
    fits = tmp_path / "fits.jsonl"
    fits.write_text(json.dumps({"id": "edge", "prompt": "word " * 4000, "reference": "x", "max_tokens": 200}) + "\n")
    with pytest.raises(DataError, match=r"item 'edge': \d+ prompt tokens \+ 200 max_tokens exceed"):
        from workbench.workloads import chat

        evalsets.check_fits(evalsets.read_eval_set(fits), chat.local_tokenizer(str(nano_path)), 4096)


def test_a_50_mb_eval_item_is_one_line(tmp_path):
    path = write_big_line(tmp_path / "fifty.jsonl", size=48 << 20)
    with pytest.raises(DataError, match=r"fifty.jsonl:1: a line longer than 16 MiB"):
        evalsets.read_eval_set(path)


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"task.yaml": "task: t\n", "utils.py": "import os\n"}, "utils.py is code"),
        ({"task.yaml": "task: t\nprocess_docs: !function utils.process\n"}, "task.yaml:2 names code with !function"),
        ({"task.yaml": "include: ../elsewhere.yaml\ntask: t\n"}, "task.yaml:1 includes a file outside the folder"),
    ],
)
def test_an_lm_eval_folder_with_code_is_refused_unless_allowed(files, problem, tmp_path, capsys):
    folder = tmp_path / "tasks"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    with pytest.raises(DataError, match=problem.replace(".", r"\.")):
        lm_eval_tasks.check_include(folder)
    lm_eval_tasks.check_include(folder, allow_code=True)
    argv = ["eval", "--model", "nano", "--lm-eval", "t", "--lm-eval-include", str(folder), "--no-save"]
    assert cli.main(argv) == 2
    assert "--allow-task-code" in capsys.readouterr().err
    assert cli.main([*argv, "--allow-task-code"]) == 2  # past the code check; the optional extra is not installed
    assert "--allow-task-code" not in capsys.readouterr().err or lm_eval_tasks.available()


def test_a_data_only_lm_eval_folder_passes_the_code_check(tmp_path):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "task.yaml").write_text("task: t\ndataset_path: json\ninclude: base.yaml\n")
    (folder / "base.yaml").write_text("output_type: multiple_choice\n")
    lm_eval_tasks.check_include(folder)


def test_serve_log_refuses_a_file_that_is_not_its_own_and_appends_to_its_own(tmp_path, capsys):
    from workbench.endpoint import server_log

    readme = tmp_path / "README.md"
    readme.write_text("# A README\n" + "text\n" * 1000)
    before = readme.read_bytes()
    assert cli.main(["serve", "--model", "nano", "--log", str(readme)]) == 2
    err = capsys.readouterr().err
    assert "is not a workbench server log" in err and len(err.strip().splitlines()) == 1
    assert readme.read_bytes() == before
    log = tmp_path / "s.log"
    handle, start = server_log.open_log(log)
    handle.write(b"first run\n")
    handle.close()
    handle, second = server_log.open_log(log)
    handle.write(b"second run\n")
    handle.close()
    text = log.read_text()
    assert start == 0 and second > 0 and "first run" in text and "second run" in text
    assert server_log.log_tail(log, start=second) == "second run"


def test_a_full_disk_under_the_report_is_one_line(monkeypatch, capsys):
    from papermill.exceptions import PapermillExecutionError

    from workbench.present import report

    class Scan:
        def warnings(self):
            return []

    monkeypatch.setattr(report, "scan", lambda *a, **k: Scan())
    full = OSError(errno.ENOSPC, "No space left on device")
    kernel_full = PapermillExecutionError(
        3, 1, "chart.save()", "OSError", "[Errno 28] No space left on device: 'x.png'", []
    )
    for raised in (full, kernel_full):

        def render(*args, raised=raised, **kwargs):
            raise raised

        monkeypatch.setattr(report, "render", render)
        assert cli.main(["report", "s1"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("workbench: error: the report ") and err.endswith("(No space left on device)")
        assert len(err.splitlines()) == 1
    monkeypatch.setattr(report, "render", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # not the disk's doing: a bug keeps its traceback
        cli.main(["report", "s1"])


def test_clean_unfinished_never_follows_a_symlinked_point_folder(tmp_path, monkeypatch, capsys):
    from workbench.paths import REPO_ROOT
    from workbench.sweep import runner

    monkeypatch.setenv("WORKBENCH_OUTPUTS", str(tmp_path / "outputs"))
    sweep = runner.load_sweep(REPO_ROOT / "params" / "smoke.yaml")
    victim = tmp_path / "precious"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    linked, plain = sweep.points[0], sweep.points[1]
    sweep.root.mkdir(parents=True, exist_ok=True)
    runner.point_dir(sweep, linked).symlink_to(victim, target_is_directory=True)
    runner.point_dir(sweep, plain).mkdir()
    (runner.point_dir(sweep, plain) / "partial.txt").write_text("left by a killed run")
    skipped = runner.clean_unfinished(sweep)
    assert skipped == [runner.point_dir(sweep, linked)]
    assert (victim / "keep.txt").read_text() == "mine" and runner.point_dir(sweep, linked).is_symlink()
    assert not runner.point_dir(sweep, plain).exists()
    err = capsys.readouterr().err
    assert f"skipped point folder {runner.point_dir(sweep, linked)}: a symlink to {victim}" in err
