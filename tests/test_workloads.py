"""Workloads are pure and hashed: seeded length distributions within their bounds, shared prefixes, per-request
generation limits honoured by the timed loop, a file's hash following its bytes, and the experiment config fields."""

import json
import random
import statistics

import pytest

from workbench.errors import ConfigError
from workbench.workloads import prompt_sets
from workbench.workloads.options import WorkloadOptions
from workbench.workloads.prompt_sets import Lengths


@pytest.mark.parametrize(
    "spec, expected",
    [
        (128, Lengths("fixed", 128, 128, 128, 0)),
        ("fixed:7", Lengths("fixed", 7, 7, 7, 0)),
        ("uniform:4,9", Lengths("uniform", 4, 9, 6.5, 0)),
        ("normal:100,20,50,140", Lengths("normal", 50, 140, 100, 20)),
    ],
)
def test_lengths_parse(spec, expected):
    assert Lengths.parse(spec) == expected
    assert Lengths.parse(expected.spec) == expected


@pytest.mark.parametrize("spec", ["uniform:9,4", "normal:1,2,3", "gamma:1,2", "uniform:a,b", "fixed:0", "fixed:1.5"])
def test_lengths_parse_refuses(spec):
    with pytest.raises(ValueError):
        Lengths.parse(spec)


@pytest.mark.parametrize("spec", ["uniform:4,9", "normal:30,40,10,60"])
def test_distributions_are_seeded_and_bounded(spec):
    lengths = Lengths.parse(spec)
    draws = lengths.sample(random.Random(1), 2000)
    assert draws == lengths.sample(random.Random(1), 2000)
    assert draws != lengths.sample(random.Random(2), 2000)
    assert lengths.low <= min(draws) and max(draws) <= lengths.high
    assert min(draws) == lengths.low and max(draws) == lengths.high, "the bounds are reached (inclusive, clipped)"
    if lengths.kind == "uniform":
        assert len(set(draws)) == lengths.high - lengths.low + 1


def test_normal_centres_on_its_mean():
    draws = Lengths.parse("normal:200,10,1,1000").sample(random.Random(0), 4000)
    assert abs(statistics.mean(draws) - 200) < 1 and 9 < statistics.stdev(draws) < 11


def test_synthetic_distributions_and_prefix_groups():
    work = prompt_sets.synthetic(
        prompt_tokens="uniform:3,12",
        gen_tokens="normal:6,3,2,9",
        count=40,
        vocab_size=50,
        seed=3,
        prefix_tokens=5,
        prefix_groups=3,
    )
    assert work.hash == prompt_sets.synthetic(**synthetic_args(work)).hash
    assert all(8 <= len(p) <= 17 for p in work.prompts), "prefix 5 + own length in [3, 12]"
    assert len({len(p) for p in work.prompts}) > 3
    assert all(2 <= n <= 9 for n in work.max_tokens) and len(work.max_tokens) == 40
    prefixes = [p[:5] for p in work.prompts]
    assert all(prefixes[i] == prefixes[i % 3] for i in range(40)) and len(set(prefixes[:3])) == 3
    assert work.generation_limits(64) == list(work.max_tokens)
    other = prompt_sets.synthetic(**{**synthetic_args(work), "seed": 4})
    assert other.hash != work.hash and other.prompts != work.prompts


def synthetic_args(work):
    p = work.params
    return dict(prompt_tokens=p["prompt_tokens"], gen_tokens=p["gen_tokens"], count=p["count"], vocab_size=50,
                seed=p["seed"], prefix_tokens=p["prefix_tokens"], prefix_groups=p["prefix_groups"])  # fmt: skip


def test_fixed_synthetic_is_unchanged_by_the_new_options():
    plain = prompt_sets.synthetic(prompt_tokens=16, count=3, vocab_size=100, seed=0)
    assert plain.params == {"prompt_tokens": 16, "count": 3, "vocab_size": 100, "seed": 0}
    assert not plain.max_tokens and plain.generation_limits(8) == [8, 8, 8] and plain.request_facts(0) == {}
    assert prompt_sets.build(tokenizer=None, vocab_size=100, prompt_tokens=16, count=3).hash == plain.hash


def test_dataset_hash_follows_the_file_bytes(nano, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "Ada lives in Paris.", "id": "a"}\n')
    first = prompt_sets.dataset(path, tokenizer=nano.tokenizer)
    assert prompt_sets.dataset(path, tokenizer=nano.tokenizer).hash == first.hash
    path.write_text('{"prompt": "Ada lives in Paris.", "id": "b"}\n')  # one byte, same prompt
    second = prompt_sets.dataset(path, tokenizer=nano.tokenizer)
    assert second.prompts == first.prompts and second.hash != first.hash
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "p.jsonl").write_bytes(path.read_bytes())
    assert prompt_sets.dataset(moved / "p.jsonl", tokenizer=nano.tokenizer).hash == second.hash, "content, not place"
    assert (
        prompt_sets.dataset(
            path, tokenizer=nano.tokenizer, options=WorkloadOptions(dataset_limit=1, min_prompt_tokens=1)
        ).hash
        != second.hash
    )


@pytest.mark.parametrize(
    "options, key",
    [
        ({"dataset_limit": 3}, "dataset_limit"),
        ({"chat": "on"}, "chat"),
        ({"dataset": "p.jsonl", "gen_dist": "uniform:1,4"}, "gen_dist"),
        ({"shared_prefix_groups": 2}, "shared_prefix_groups"),
        ({"prompt_dist": "uniform:5,2"}, "prompt_dist"),
        ({"dataset": "p.jsonl", "min_prompt_tokens": 9, "max_prompt_tokens": 3}, "min_prompt_tokens"),
    ],
)
def test_option_problems(options, key):
    assert prompt_sets.option_problem(options)[0] == key


def test_per_request_generation_limits_in_the_timed_loop(nano):
    from workbench.measure import timed

    prompts = [[1, 2, 3], [4, 5, 6, 7], [8, 9]]
    for batch_size in (1, 3):
        records = timed.measure_generation(
            nano.model,
            nano.tokenizer,
            prompts,
            timed.Schedule(trials=1, warmup=0, batch_size=batch_size),
            gen_tokens=[2, 5, 3],
        )
        assert [r.generated_tokens for r in records] == [2, 5, 3]
        assert [r.prompt_tokens for r in records] == [3, 4, 2]


def test_experiment_config_workload_fields(nano, nano_path, tmp_path):
    from workbench import experiments
    from workbench.experiments import base

    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "Ada lives in Paris.", "max_tokens": 2}) + "\n" + '{"prompt": "Bo"}\n')
    values = {"model": str(nano_path), "dataset": str(path), "gen_tokens": 3, "trials": 1, "warmup": 0}
    config = experiments.build_config("quantise", None, values)
    frame = base.measure_speed([base.Arm(base.baseline_variant(), nano)], config, run_id="t")
    assert frame["generated_tokens"].to_list() == [2, 3, 2, 3], "two rounds of the file's two prompts"
    assert frame["workload"][0] == "dataset:p.jsonl" and frame["chat_template"].to_list() == [False] * 4

    synthetic = experiments.build_config("quantise", None, {"prompt_dist": "uniform:4,8", "shared_prefix_tokens": 6})
    assert synthetic.longest_sequence() == 6 + 8 + synthetic.gen_tokens
    refusals = [
        ("quantise", {"dataset": str(tmp_path / "missing.jsonl")}, "quantise.dataset: "),
        ("quantise", {"prompt_dist": "triangle:1"}, "quantise.prompt_dist: "),
        (
            "quantise",
            {"dataset": str(path), "shared_prefix_tokens": 4},
            "quantise.shared_prefix_tokens: applies to synthetic",
        ),
        ("prompt_cache", {"dataset": str(path)}, "prompt_cache.dataset: this experiment builds its own prompts"),
    ]
    for name, overrides, message in refusals:
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            experiments.build_config(name, None, overrides)
