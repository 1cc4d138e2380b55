"""Eval sets from files (measure/evalsets.py), lm-eval tasks (measure/lm_eval_tasks.py) and tokenizer-safe
comparisons, on a chat-templated copy of nano made here: its own greedy replies score exact match 1.0, a
multiple-choice set scores acc 1.0 or 0 as constructed, and every bad file is one line, exit 2, nothing written."""

import json

import mlx.core as mx
import mlx.nn as nn
import polars as pl
import pytest
from conftest import copy_with_chat_template

from workbench import console, run
from workbench.analysis import per_variant
from workbench.errors import ConfigError, ModelError
from workbench.measure import evalsets, evaluate, quality
from workbench.models import loader
from workbench.workloads import prompt_sets

TEMPLATE = (  # a system turn is the context, user turns are questions, the reply an answer: what nano was trained on
    "{% for m in messages %}{% if m['role'] == 'system' %}Context: {{ m['content'] }}\n"
    "{% elif m['role'] == 'user' %}Q: {{ m['content'] }}\n{% else %}A: {{ m['content'] }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}A:{% endif %}"
)
CONVERSATIONS = [
    [
        {"role": "system", "content": "Ana lives in Paris. Ben owns a cat."},
        {"role": "user", "content": "Where does Ana live?"},
    ],
    [{"role": "system", "content": "Ben owns a cat."}, {"role": "user", "content": "What pet does Ben own?"}],
    [{"role": "user", "content": "What is the job of Cara?"}],
]
FACT = "Context: Ana lives in Paris. Ben owns a cat. Cara likes brown.\nQ: Where does Ana live?\nA: Ana lives in"
CHOICES = [" Paris", " cat", " brown", " Rome", " teacher"]


def eval_tool(argv, capsys):
    code = console.entry(evaluate.main, argv)
    out, err = capsys.readouterr()
    return code, out, err


def write_jsonl(path, items) -> str:
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def chat_dir(nano_path, tmp_path_factory):
    """nano's files with a chat template in tokenizer_config.json."""
    return copy_with_chat_template(nano_path, tmp_path_factory.mktemp("chat") / "nano-chat", TEMPLATE)


@pytest.fixture(scope="module")
def chat_model(chat_dir):
    return loader.load(str(chat_dir))


def own_log_likelihood(model, context: list[int], continuation: list[int]) -> float:
    """Sum of log p(continuation | context) from one plain forward pass, written out independently."""
    tokens = mx.array(context + continuation)[None]
    log_probs = nn.log_softmax(model(tokens[:, :-1])[0].astype(mx.float32), axis=-1)
    return sum(log_probs[len(context) - 1 + i, t].item() for i, t in enumerate(continuation))


def test_own_greedy_replies_under_the_template_score_exact_match_1(chat_model, chat_dir, tmp_path, capsys, _outputs):
    from mlx_lm import generate

    tokenizer = chat_model.tokenizer
    items, lengths = [], []
    for messages in CONVERSATIONS:
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        reply = generate(chat_model.model, tokenizer, prompt, max_tokens=12)
        items.append({"messages": messages, "reference": reply, "max_tokens": 12})
        lengths.append(len(prompt))
    assert any(item["reference"].strip() for item in items)
    path = write_jsonl(tmp_path / "own.jsonl", items)
    code, out, err = eval_tool(["--model", str(chat_dir), "--eval-set", path, "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["eval_exact_match"] == 1.0 == summary["task_accuracy"]
    assert summary["eval_items"] == 3 and summary["quality_measured"] == "task"
    frame = pl.read_parquet(f"{summary['run_dir']}/results.parquet")
    assert frame["prompt_tokens"].to_list() == lengths  # the template-rendered lengths
    assert frame["item_id"].to_list() == ["1", "2", "3"] and set(frame["metric"]) == {"exact_match"}
    assert frame["workload"][0] == "eval_set:own"

    wrong = [{**item, "reference": item["reference"] + " and more"} for item in items]  # the test can fail
    frame, summary = evaluate.run_eval(
        chat_model, evaluate.EvalSpec(eval_set=write_jsonl(tmp_path / "wrong.jsonl", wrong))
    )
    assert summary["eval_exact_match"] == 0.0


def test_multiple_choice_acc_follows_the_log_likelihood_of_each_choice(chat_model):
    tokenizer = chat_model.tokenizer
    context, conts = zip(*(evalsets.encode_pair(tokenizer, FACT, choice) for choice in CHOICES))
    own = [own_log_likelihood(chat_model.model, context[0], cont) for cont in conts]
    order = sorted(range(len(CHOICES)), key=own.__getitem__)
    likeliest, least = order[-1], order[0]
    items = [
        evalsets.EvalItem("best", FACT, None, choices=tuple(CHOICES), answer=likeliest),
        evalsets.EvalItem("worst", FACT, None, choices=tuple(CHOICES), answer=least),
    ]
    rows = evalsets.score_items(chat_model, evalsets.EvalSet("mc", "x", tuple(items)))
    assert [r["score"] for r in rows] == [1.0, 0.0]
    assert rows[0]["choice_logprobs"] == pytest.approx(own, abs=1e-3)
    assert rows[0]["prediction"] == CHOICES[likeliest] and rows[1]["reference"] == CHOICES[least]
    assert evalsets.summarise(rows)["eval_acc"] == 0.5 and "eval_acc_norm" in evalsets.summarise(rows)


def test_multiple_choice_from_a_file_with_messages(chat_model, chat_dir, tmp_path, capsys):
    messages = [{"role": "user", "content": "Where does Ana live?"}]
    prompt = chat_model.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    conts = [list(chat_model.tokenizer.encode(c, add_special_tokens=False)) for c in CHOICES]
    own = [own_log_likelihood(chat_model.model, prompt, cont) for cont in conts]
    best, worst = max(range(5), key=own.__getitem__), min(range(5), key=own.__getitem__)
    items = [{"messages": messages, "choices": CHOICES, "answer": answer} for answer in (best, best, worst)]
    code, out, err = eval_tool(["--model", str(chat_dir), "--eval-set", write_jsonl(tmp_path / "mc.jsonl", items)]
                               + ["--json", "--no-save"], capsys)  # fmt: skip
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["eval_acc"] == pytest.approx(2 / 3) and 0 <= summary["eval_acc_norm"] <= 1
    assert "task_accuracy" not in summary  # no generation items


def test_generation_metrics_and_stop_strings():
    assert quality.score_exact("  Paris \n", "Paris") == 1.0 and quality.score_exact("paris", "Paris") == 0.0
    assert quality.score_contains("She lives in Paris now", " Paris ") == 1.0
    assert quality.score_regex("answer: 42.", r"\b42\b") == 1.0 and quality.score_regex("4242", r"^42$") == 0.0
    assert quality.token_f1("the red cat", "red cat") == pytest.approx(0.8)


def test_stop_strings_cut_and_nothing_else(nano):
    prompt = nano.tokenizer.encode(FACT)
    full, count = quality.generate_until(nano.model, nano.tokenizer, prompt, 10)
    assert count == 10 or full == full.rstrip()  # stopped at EOS or after 10 tokens
    stop = full.strip()[:1]
    cut, _ = quality.generate_until(nano.model, nano.tokenizer, prompt, 10, (stop,))
    assert cut == full[: full.index(stop)]


def test_facts_file_is_the_task_items_and_regenerates_identically():
    lines = evalsets.FACTS_PATH.read_text(encoding="utf-8").splitlines()
    assert lines == evalsets.facts_lines() and len(lines) >= 200
    facts = evalsets.read_facts(200)
    workload = prompt_sets.task("facts", count=200)  # what `--task facts` scored before it became data
    assert [i.prompt for i in facts.items] == list(workload.prompts)
    assert [i.reference for i in facts.items] == list(workload.references)
    with pytest.raises(ConfigError, match="500 items"):
        evalsets.read_facts(501)


def test_task_facts_goes_through_the_eval_set_path(nano):
    frame, summary = evaluate.run_eval(nano, evaluate.EvalSpec(task="facts", task_count=4))
    assert summary["eval_set"] == "facts_heldout" and summary["eval_items"] == 4
    assert summary["task_accuracy"] == summary["eval_exact_match"]
    assert frame["item_id"].to_list() == [f"facts-{i}" for i in range(4)] and set(frame["kind"]) == {"task"}


BAD = [
    ("missing", None, "no such file"),
    ("directory", None, "is a directory"),
    ("latin1", b'{"prompt": "caf\xe9", "reference": "x"}\n', "not UTF-8"),
    ("badjson", b'{"prompt": "a", "reference": "b"}\n{"prompt": "a",\n', "bad.jsonl:2: not valid JSON"),
    ("notobject", b'["prompt", "reference"]\n', "expected a JSON object"),
    ("noprompt", b'{"reference": "b"}\n', "exactly one of 'prompt' and 'messages'"),
    ("noreference", b'{"prompt": "a"}\n', "needs 'reference'"),
    ("noanswer", b'{"prompt": "a", "choices": [" x", " y"]}\n', "needs 'answer'"),
    ("answer", b'{"prompt": "a", "choices": [" x", " y"], "answer": 2}\n', "'answer' must be an index"),
    ("metric", b'{"prompt": "a", "reference": "b", "metric": "bleu"}\n', "unknown metric 'bleu'"),
    ("regex", b'{"prompt": "a", "reference": "(unclosed", "metric": "regex"}\n', "not a valid regular expression"),
    ("empty", b"", "has no items"),
    ("blank", b"\n  \n", "has no items"),
    ("unknownkey", b'{"prompt": "a", "refrence": "b"}\n', "unknown key 'refrence'"),
    ("dupid", b'{"id": 1, "prompt": "a", "reference": "b"}\n{"id": "1", "prompt": "c", "reference": "d"}\n', "twice"),
    ("maxtokens", b'{"prompt": "a", "reference": "b", "max_tokens": 0}\n', "'max_tokens' must be"),
]


@pytest.mark.parametrize("case, content, message", BAD, ids=[case for case, _, _ in BAD])
def test_bad_eval_set_is_one_line_exit_2_and_writes_nothing(case, content, message, nano_path, tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    if case == "directory":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    code, out, err = eval_tool(["--model", str(nano_path), "--eval-set", str(path)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("workbench: error:") and message in err, err
    assert not (tmp_path / "outputs").exists()  # WORKBENCH_OUTPUTS stays empty


def test_messages_without_a_template_are_one_line(nano_path, tmp_path, capsys, _outputs):
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": CONVERSATIONS[0], "reference": "x"}])
    code, _, err = eval_tool(["--model", str(nano_path), "--eval-set", path], capsys)
    assert code == 2 and err.count("\n") == 1 and "no chat template" in err
    assert not list(_outputs.glob("runs/*"))


def test_experiments_take_an_eval_set(nano_path, tmp_path):
    from workbench import experiments
    from workbench.experiments.base import Variant, measure_quality

    path = write_jsonl(tmp_path / "items.jsonl", [{"prompt": FACT, "reference": "Paris", "max_tokens": 3}])
    config = experiments.build_config("quantise", None, {"model": str(nano_path), "eval_set": path})
    frame = measure_quality(loader.load(str(nano_path)), Variant("v", quality=("task",)), config, run_id="r")
    assert frame["workload"].to_list() == ["eval_set:items"] and frame["item_id"].to_list() == ["1"]
    with pytest.raises(ConfigError, match=r"quantise\.eval_set: eval set .* no such file"):
        experiments.build_config("quantise", None, {"eval_set": str(tmp_path / "none.jsonl")})


def test_fidelity_and_speculative_refuse_another_tokenizer(
    nano_path, other_tokenizer, tmp_path, capsys, _outputs, monkeypatch
):
    argv = ["--model", str(nano_path), "--baseline", str(other_tokenizer), "--task", "facts", "--task-count", "2"]
    code, _, err = eval_tool(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "baseline 'nano-swapped' has another tokenizer" in err
    assert not list(_outputs.glob("runs/*"))

    outputs = tmp_path / "outputs-speculative"
    monkeypatch.setenv("WORKBENCH_OUTPUTS", str(outputs))
    params = tmp_path / "spec.yaml"
    params.write_text(f"draft: {other_tokenizer}\nnum_draft_tokens: [2]\ngen_tokens: 8\nprompt_tokens: 8\n")
    code = console.entry(run.main, ["speculative", "--params", str(params), "--model", str(nano_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "draft 'nano-swapped' has another tokenizer" in err, err
    assert not outputs.exists()  # refused before the outputs folder is made
    with pytest.raises(ModelError, match="draft 'nano-swapped'"):  # the check run() makes on loaded models
        loader.check_same_tokenizer(loader.load(str(nano_path)), loader.load(str(other_tokenizer)), role="draft")


def lm_eval_task(folder, data) -> None:
    (folder / "tiny_mc.yaml").write_text(
        "task: tiny_mc\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n  cache_dir: {folder / 'cache'}\n"
        "test_split: test\noutput_type: multiple_choice\ntarget_delimiter: ''\n"
        'doc_to_text: "{{prompt}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: "{{answer}}"\n'
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n"
    )


def test_lm_eval_local_task_offline_matches_the_eval_set_path(nano, nano_path, tmp_path, monkeypatch, capsys):
    pytest.importorskip("lm_eval", reason="the optional lm-eval extra is not installed (pip install '.[lm-eval]')")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    items = [{"prompt": FACT, "choices": CHOICES, "answer": a} for a in (0, 3)]
    data = write_jsonl(tmp_path / "tiny.jsonl", items)
    lm_eval_task(tmp_path, data)
    argv = ["--model", str(nano_path), "--lm-eval", "tiny_mc", "--lm-eval-include", str(tmp_path), "--json"]
    code, out, err = eval_tool([*argv, "--no-save"], capsys)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    frame, ours = evaluate.run_eval(nano, evaluate.EvalSpec(eval_set=data))
    assert summary["lm_eval.tiny_mc.acc"] == ours["eval_acc"]
    assert summary["lm_eval.tiny_mc.acc_norm"] == ours["eval_acc_norm"]
    assert summary["quality_measured"] == "lm_eval"
    theirs, _ = evaluate.run_eval(nano, evaluate.EvalSpec(lm_eval=["tiny_mc"], lm_eval_include=tmp_path))
    assert theirs["item_id"].to_list() == ["tiny_mc/0", "tiny_mc/1"] and theirs["workload"][0] == "lm_eval:tiny_mc"
    for a, b in zip(theirs["choice_logprobs"].to_list(), frame["choice_logprobs"].to_list()):
        assert a == pytest.approx(b, abs=1e-3)
    code, _, err = eval_tool(["--model", str(nano_path), "--lm-eval", "no_such_task_here", "--lm-eval-include",
                              str(tmp_path)], capsys)  # fmt: skip
    assert code == 2 and "unknown lm-eval task 'no_such_task_here'" in err


def test_lost_items_are_those_a_variant_scored_below_the_baseline(nano):

    frame, _ = evaluate.run_eval(nano, evaluate.EvalSpec(task="facts", task_count=6))
    base = frame.with_columns(variant=pl.lit("baseline"))
    lowered = pl.when(pl.col("item_id") == "facts-2").then(pl.col("score") - 1).otherwise(pl.col("score"))
    worse = frame.with_columns(variant=pl.lit("v"), score=lowered)  # the rows as a variant that lost item 2
    lost = per_variant.lost_items(pl.concat([base, worse]))
    assert lost["item_id"].to_list() == ["facts-2"] and lost["variant"].to_list() == ["v"]
    assert lost["baseline_score"][0] == frame.filter(item_id="facts-2")["score"][0]


def test_lm_eval_without_the_extra_is_one_line_before_anything_runs(nano_path, monkeypatch, capsys, _outputs):
    from workbench.measure import lm_eval_tasks

    monkeypatch.setattr(lm_eval_tasks, "available", lambda: False)
    code, _, err = eval_tool(["--model", str(nano_path), "--lm-eval", "arc_easy"], capsys)
    assert code == 2 and err.count("\n") == 1 and "pip install 'chimera-workbench[lm-eval]'" in err
    assert not _outputs.exists()
