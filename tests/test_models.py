import json
import shutil

import pytest

from workbench.errors import ConfigError
from workbench.models import build, loader
from workbench.optimise import quantise


def test_load_nano_by_path(nano_path):
    loaded = loader.load(str(nano_path))
    assert loaded.config["model_type"] == "llama"
    assert loaded.model_hash == loader.fingerprint_dir(nano_path)
    assert loaded.load_s > 0


def test_missing_path_is_a_one_line_error(tmp_path):
    with pytest.raises(loader.ModelError, match="not found") as err:
        loader.load(str(tmp_path / "nope"))
    assert "\n" not in str(err.value)


def test_directory_without_config(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(loader.ModelError, match="no config.json"):
        loader.load(str(tmp_path / "m"))


def test_unreadable_weights(tmp_path, nano_path):
    broken = tmp_path / "broken"
    shutil.copytree(nano_path, broken)
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(loader.ModelError, match="cannot load model") as err:
        loader.load(str(broken))
    assert "\n" not in str(err.value)


def test_corrupt_config(tmp_path, nano_path):
    broken = tmp_path / "broken"
    shutil.copytree(nano_path, broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(loader.ModelError, match="unreadable config.json"):
        loader.load(str(broken))


def test_hf_repo_ids_are_passed_through_without_contacting_the_hub():
    assert loader.resolve("mlx-community/Qwen3-0.6B-4bit") == ("mlx-community/Qwen3-0.6B-4bit",) * 2
    with pytest.raises(loader.ModelError):
        loader.resolve("no spaces allowed/here x")


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset"):
        build.get_recipe("giant")


def test_build_is_cached_and_records_its_recipe(nano_path):
    info = json.loads((nano_path / "build.json").read_text())
    assert info["recipe_hash"] == build.get_recipe("nano").hash()
    assert build.build_model("nano", progress=False) == nano_path


def test_training_is_deterministic_for_a_seed():
    import dataclasses

    import numpy as np
    from mlx.utils import tree_flatten
    from tokenizers import Tokenizer

    recipe = dataclasses.replace(build.get_recipe("nano"), steps=3, warmup_steps=1)
    tokenizer = Tokenizer.from_file(str(build.build_tokenizer(recipe) / "tokenizer.json"))
    from workbench.training.losses import cross_entropy_loss
    from workbench.training.trainer import fit

    a, _ = fit(build.init_model(recipe), recipe, tokenizer, cross_entropy_loss, progress=False)
    b, _ = fit(build.init_model(recipe), recipe, tokenizer, cross_entropy_loss, progress=False)
    for (name, x), (_, y) in zip(tree_flatten(a.parameters()), tree_flatten(b.parameters())):
        np.testing.assert_array_equal(np.array(x), np.array(y), err_msg=name)


def test_student_is_about_a_quarter_of_default():
    from workbench.models.build import init_model

    default = loader.parameter_count(init_model(build.get_recipe("default")))
    student = loader.parameter_count(init_model(build.get_recipe("student")))
    assert 0.18 < student / default < 0.32


def test_model_error_is_the_shared_workbench_error():
    from workbench import errors

    assert loader.ModelError is errors.ModelError
    assert issubclass(loader.ModelError, errors.WorkbenchError)


@pytest.fixture(scope="module")
def fp16_nano(nano_path, tmp_path_factory):
    """nano converted to a float16 checkpoint, as most hub checkpoints are half precision."""
    from mlx_lm import convert

    target = tmp_path_factory.mktemp("fp16") / "nano-fp16"
    convert(str(nano_path), str(target), dtype="float16")
    return target


def floating_dtypes(model) -> set[str]:
    import mlx.core as mx
    from mlx.utils import tree_flatten

    return {str(v.dtype) for _, v in tree_flatten(model.parameters()) if mx.issubdtype(v.dtype, mx.floating)}


def test_auto_dtype_is_float32_on_cpu_and_the_checkpoint_dtype_elsewhere(fp16_nano):
    from workbench import runtime

    loaded = loader.load(str(fp16_nano))
    expected = "float32" if runtime.backend() == "cpu" else "float16"
    assert loaded.dtype == expected
    assert floating_dtypes(loaded.model) == {f"mlx.core.{expected}"}


def test_explicit_dtype_casts_every_floating_array(fp16_nano, nano_path):
    assert loader.load(str(fp16_nano), dtype="float32").dtype == "float32"
    loaded = loader.load(str(nano_path), dtype="bfloat16")
    assert loaded.dtype == "bfloat16"
    assert floating_dtypes(loaded.model) == {"mlx.core.bfloat16"}
    with pytest.raises(loader.ModelError, match="dtype 'float64' is not supported"):
        loader.load(str(nano_path), dtype="float64")


def test_quantising_a_half_precision_checkpoint_gives_float32_scales_on_cpu(fp16_nano, tmp_path, monkeypatch):
    """The fp16 source is cast before quantising, so the stored scales and biases (not only the loaded ones)
    are float32, and the quantised matmul runs at fp32 speed on this CPU."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load as mlx_load

    from workbench import runtime
    from workbench.measure import quality
    from workbench.workloads import corpus

    if runtime.backend() != "cpu":
        pytest.skip("auto keeps the checkpoint's float16 off the CPU backend")
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    path = quantise.quantised(str(fp16_nano), bits=4, group_size=64)
    assert "-float32-" in path.name
    assert json.loads((path / "quantisation.json").read_text())["dtype"] == "float32"
    raw, _ = mlx_load(str(path))  # as stored, before load() casts anything
    stored = dict(tree_flatten(raw.parameters()))
    assert stored["model.layers.0.self_attn.q_proj.weight"].dtype == mx.uint32
    assert stored["model.layers.0.self_attn.q_proj.scales"].dtype == mx.float32
    assert stored["model.norm.weight"].dtype == mx.float32

    loaded = loader.load(str(path))
    source = loader.load(str(fp16_nano))
    chunks = quality.chunk_tokens(loaded.tokenizer.encode(corpus.heldout_text()), 64, max_chunks=4)
    quantised_ppl = quality.perplexity(loaded.model, chunks)["perplexity"]
    source_ppl = quality.perplexity(source.model, chunks)["perplexity"]
    assert quantised_ppl != source_ppl
    assert quantised_ppl == pytest.approx(source_ppl, rel=0.1)


def test_curriculum_ramps_the_facts_per_context_and_new_fields_enter_the_hash():
    import dataclasses

    recipe = dataclasses.replace(build.get_recipe("nano"), min_facts=2, max_facts=8, curriculum_steps=12)
    assert [recipe.facts_bound(step) for step in (0, 6, 11, 12, 500)] == [2, 5, 7, 8, 8]
    assert dataclasses.replace(recipe, curriculum_steps=0).facts_bound(0) == 8
    assert recipe.hash() != build.get_recipe("nano").hash()
    assert dataclasses.replace(recipe, questions=8).hash() != recipe.hash()
    with pytest.raises(ValueError, match="min_facts"):
        dataclasses.replace(recipe, min_facts=9)


def test_same_attribute_contexts_leave_only_the_name_to_tell_facts_apart():
    import random

    from workbench.workloads import tasks

    rng = random.Random(3)
    for _ in range(20):
        segments = tasks.make_training_segments(rng, min_facts=4, max_facts=6, same_attribute=1.0, questions=8)
        facts = segments[0][0].removeprefix("Context: ").strip().split(". ")
        stems = {" ".join(fact.split()[1:-1]) for fact in facts}
        assert len(facts) >= 4 and len(stems) == 1, facts
        assert sum(is_answer for _, is_answer in segments) == len(facts)


def test_training_rows_follow_the_curriculum_and_never_hold_evaluation_contexts():
    import dataclasses
    import re

    from tokenizers import Tokenizer

    from workbench.training.data import Batches
    from workbench.workloads import tasks

    recipe = dataclasses.replace(
        build.get_recipe("nano"), task_fraction=1.0, min_facts=2, max_facts=8, curriculum_steps=100, questions=8
    )
    tokenizer = Tokenizer.from_file(str(build.build_tokenizer(recipe) / "tokenizer.json"))
    batches = Batches(recipe, tokenizer)

    def contexts(step):
        tokens, _ = batches.next(step)
        text = "".join(tokenizer.decode(row.tolist()) for row in tokens)
        return re.findall(r"Context: (.*)\n", text)

    early = [c.count(".") for c in contexts(0)]
    assert early and max(early) == 2  # the curriculum starts at min_facts
    seen = set()
    for step in range(100, 160):
        seen.update(contexts(step))
    assert max(c.count(".") for c in seen) > 4
    heldout = {item.context.removeprefix("Context: ").rstrip("\n") for item in tasks.make_items(200, seed=0)}
    assert not heldout & seen


def test_committed_default_weights_are_built_from_the_current_recipe():
    """A recipe change without rebuilt weights would make every fresh clone train for half an hour."""
    import dataclasses

    from workbench.models.assets import ASSETS_DIR, find_committed

    recipe = build.get_recipe("default")
    assert find_committed(recipe) == ASSETS_DIR / "default"
    info = json.loads((ASSETS_DIR / "default" / "build.json").read_text())
    assert info["recipe"] == dataclasses.asdict(recipe)
    assert (ASSETS_DIR / "default" / "model.safetensors").stat().st_size < 20 * 2**20
