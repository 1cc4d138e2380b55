"""`workbench bench --dataset` on a chat-templated copy of nano: rows from JSONL, CSV, parquet and ShareGPT files
carry the template-rendered prompt lengths (as mlx-lm's tokenizer renders them), and every bad file is one line,
exit 2, and nothing written."""

import json
import shutil

import polars as pl
import pytest
from conftest import copy_with_chat_template

from workbench import cli
from workbench.workloads import datasets, prompt_sets
from workbench.workloads.options import WorkloadOptions

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CHAT = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Where does Ada live?"}]


@pytest.fixture(scope="module")
def chat_nano(nano_path, tmp_path_factory):
    """nano's files plus a chat template in tokenizer_config.json."""
    return copy_with_chat_template(nano_path, tmp_path_factory.mktemp("models") / "chat-nano", TEMPLATE)


@pytest.fixture(scope="module")
def tokenizer(chat_nano):
    from mlx_lm.utils import load_tokenizer

    return load_tokenizer(chat_nano)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def bench(model, dataset, *extra, outputs=None):
    argv = ["bench", "--model", str(model), "--dataset", str(dataset), "--gen-tokens", "3", "--trials", "1"]
    code = cli.main([*argv, "--warmup", "0", "--json", *extra])
    assert code == 0
    (run,) = (outputs / "runs").iterdir()
    return pl.read_parquet(run / "results.parquet").sort("request_index")


def chat_length(tokenizer, messages):
    return len(tokenizer.apply_chat_template(messages, add_generation_prompt=True))


def test_jsonl_messages_and_prompts(chat_nano, tokenizer, tmp_path, _outputs):
    rows = [{"prompt": "Ada lives in Paris."}, {"messages": CHAT, "max_tokens": 5}, {"prompt": "Bo", "max_tokens": 2}]
    frame = bench(chat_nano, write_jsonl(tmp_path / "p.jsonl", rows), outputs=_outputs)
    expected = [len(tokenizer.encode(rows[0]["prompt"])), chat_length(tokenizer, CHAT), len(tokenizer.encode("Bo"))]
    assert frame["prompt_tokens"].to_list() == expected
    assert frame["chat_template"].to_list() == [False, True, False]
    assert frame["generated_tokens"].to_list() == [3, 5, 2], "a row's max_tokens, else --gen-tokens (EOS suppressed)"
    assert frame["workload"][0] == "dataset:p.jsonl"


def test_chat_on_wraps_raw_prompts(chat_nano, tokenizer, tmp_path, _outputs):
    frame = bench(
        chat_nano, write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Hi there"}]), "--chat", "on", outputs=_outputs
    )
    assert frame["prompt_tokens"].to_list() == [chat_length(tokenizer, [{"role": "user", "content": "Hi there"}])]
    assert frame["chat_template"].to_list() == [True]


def test_csv_and_parquet(chat_nano, tokenizer, tmp_path, _outputs):
    csv_path = tmp_path / "p.csv"
    messages_cell = json.dumps(CHAT).replace('"', '""')
    csv_path.write_text(f'prompt,messages,max_tokens\nHello Ada,,4\n,"{messages_cell}",\n')
    frame = bench(chat_nano, csv_path, outputs=_outputs)
    assert frame["prompt_tokens"].to_list() == [len(tokenizer.encode("Hello Ada")), chat_length(tokenizer, CHAT)]
    assert frame["generated_tokens"].to_list() == [4, 3]

    parquet_path = tmp_path / "p.parquet"
    pl.DataFrame({"prompt": [None, "Hello Ada"], "messages": [CHAT, None], "max_tokens": [2, None]}).write_parquet(
        parquet_path
    )
    shutil.rmtree(_outputs)
    frame = bench(chat_nano, parquet_path, outputs=_outputs)
    assert frame["prompt_tokens"].to_list() == [chat_length(tokenizer, CHAT), len(tokenizer.encode("Hello Ada"))]
    assert frame["generated_tokens"].to_list() == [2, 3]


def test_sharegpt_first_turn_and_every_turn(chat_nano, tokenizer, tmp_path, _outputs):
    conversation = [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "Where does Ada live?"},
        {"from": "gpt", "value": "Paris."},
        {"from": "human", "value": "And Bo?"},
        {"from": "gpt", "value": "Rome."},
    ]
    path = tmp_path / "share.json"
    path.write_text(json.dumps([{"id": "a", "conversations": conversation}]))
    items, _ = datasets.read_items(path, turns="all")
    roles = {"system": "system", "human": "user", "gpt": "assistant"}
    turns = [{"role": roles[t["from"]], "content": t["value"]} for t in conversation]
    assert [item["messages"] for item in items] == [turns[:2], turns[:4]]
    assert [(item["conversation"], item["turn"]) for item in items] == [(0, 0), (0, 1)]

    frame = bench(chat_nano, path, "--dataset-turns", "all", outputs=_outputs)
    assert frame["prompt_tokens"].to_list() == [chat_length(tokenizer, turns[:2]), chat_length(tokenizer, turns[:4])]
    shutil.rmtree(_outputs)
    frame = bench(chat_nano, path, outputs=_outputs)
    assert frame["prompt_tokens"].to_list() == [chat_length(tokenizer, turns[:2])]


def test_limit_order_and_length_filters(chat_nano, tokenizer, tmp_path, _outputs):

    prompts = [" ".join(["word"] * n) for n in (2, 20, 5, 40, 8)]
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": p} for p in prompts])
    lengths = [len(tokenizer.encode(p)) for p in prompts]
    kept = prompt_sets.dataset(
        path, tokenizer=tokenizer, options=WorkloadOptions(min_prompt_tokens=min(lengths) + 1, max_prompt_tokens=30)
    )
    assert [len(p) for p in kept.prompts] == [n for n in lengths if min(lengths) < n <= 30]
    first = prompt_sets.dataset(path, tokenizer=tokenizer, options=WorkloadOptions(dataset_limit=2))
    assert [i["prompt"] for i in first.items] == prompts[:2]
    shuffled = [
        prompt_sets.dataset(path, tokenizer=tokenizer, options=WorkloadOptions(dataset_order="shuffle"), seed=s).items
        for s in (1, 1, 2)
    ]
    assert shuffled[0] == shuffled[1] and sorted(i["prompt"] for i in shuffled[0]) == sorted(prompts)
    assert shuffled[0] != shuffled[2], "another seed, another order"


BAD_FILES = {
    "missing": (None, "no such file"),
    "unknown extension": ("p.txt", "unknown file type"),
    "not UTF-8": (b'{"prompt": "caf\xe9"}\n', "not UTF-8"),
    "invalid JSON line": ('{"prompt": "a"}\n{"prompt": \n', "p.jsonl:2: invalid JSON"),
    "no prompt": ('{"text": "a"}\n', "neither prompt nor messages"),
    "both": ('{"prompt": "a", "messages": []}\n', "both prompt and messages"),
    "prompt a number": ('{"prompt": 3}\n', "prompt must be a string, got int"),
    "messages not a list": ('{"messages": "hi"}\n', "messages must be a non-empty list"),
    "message without role": ('{"messages": [{"content": "hi"}]}\n', "messages[0] must be an object with role"),
    "bad max_tokens": ('{"prompt": "a", "max_tokens": "ten"}\n', "max_tokens must be a positive integer"),
    "row not an object": ("[1, 2]\n", "a row must be an object"),
    "empty": ("\n", "no prompts in the file"),
    "json not an array": ('{"prompt": "a"}', "one array of objects"),
    "csv bad messages": ("messages\n[{oops\n", "messages is not a JSON list"),
    "corrupt parquet": (b"PAR1 not really", "not a readable parquet file"),
    "sharegpt speaker": ('{"conversations": [{"from": "alien", "value": "hi"}]}\n', "unknown speaker 'alien'"),
}
SUFFIX = {"csv bad messages": ".csv", "corrupt parquet": ".parquet", "json not an array": ".json"}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_is_one_line_exit_2_and_writes_nothing(case, chat_nano, tmp_path, _outputs, capsys):
    content, message = BAD_FILES[case]
    path = tmp_path / (content if case == "unknown extension" else f"p{SUFFIX.get(case, '.jsonl')}")
    if case == "unknown extension":
        path.write_text('{"prompt": "a"}\n')
    elif content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert_refused(["--dataset", str(path)], message, chat_nano, _outputs, capsys)


@pytest.mark.parametrize(
    "rows, extra, message, templated",
    [
        ([{"messages": CHAT}], [], "has no chat template", False),
        ([{"messages": CHAT}], ["--chat", "off"], "chat 'off'", True),
        ([{"prompt": "a b c"}], ["--min-prompt-tokens", "1000"], "no prompt of the file's 1", True),
        ([{"prompt": "a b c"}], ["--gen-tokens", "8000"], "the model's context is", True),
        ([{"prompt": "a b c"}], ["--prompt-dist", "uniform:1,4"], "--prompt-dist: applies to synthetic", True),
        ([{"prompt": "a b c"}], ["--requests", "3"], "--requests: applies to synthetic", True),
    ],
)
def test_bad_dataset_for_the_model_is_refused_before_anything_runs(
    rows, extra, message, templated, nano_path, chat_nano, tmp_path, _outputs, capsys
):
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    assert_refused(["--dataset", str(path), *extra], message, chat_nano if templated else nano_path, _outputs, capsys)


def assert_refused(args, message, model, outputs, capsys):
    capsys.readouterr()
    code = cli.main(["bench", "--model", str(model), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("workbench: error:") and message in err[0], err
    assert not outputs.exists(), "nothing written"


def test_chat_messages_for_a_model_without_template_write_nothing(nano_path, tmp_path, _outputs, capsys):
    """`workbench run` with a messages dataset, and `eval` with a messages eval set, on nano (no template)."""
    messages = {"messages": [{"role": "user", "content": "hi"}]}
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps(messages) + "\n")
    params = tmp_path / "p.yaml"
    params.write_text(f"model: {nano_path}\ndataset: {data}\n")
    evals = tmp_path / "ev.jsonl"
    evals.write_text(json.dumps({**messages, "reference": "x"}) + "\n")
    for argv in (
        ["run", "batching", "--params", str(params)],
        ["eval", "--model", str(nano_path), "--eval-set", str(evals)],
    ):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no chat template" in err[0]
        assert not (_outputs / "runs").exists()
