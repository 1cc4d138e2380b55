import json
import shutil

import pytest

from workbench import build, models


def test_load_nano_by_path(nano_path):
    loaded = models.load(str(nano_path))
    assert loaded.config["model_type"] == "llama"
    assert loaded.model_hash == models.fingerprint_dir(nano_path)
    assert loaded.load_s > 0


def test_missing_path_is_a_one_line_error(tmp_path):
    with pytest.raises(models.ModelError, match="not found") as err:
        models.load(str(tmp_path / "nope"))
    assert "\n" not in str(err.value)


def test_directory_without_config(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(models.ModelError, match="no config.json"):
        models.load(str(tmp_path / "m"))


def test_unreadable_weights(tmp_path, nano_path):
    broken = tmp_path / "broken"
    shutil.copytree(nano_path, broken)
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(models.ModelError, match="cannot load model") as err:
        models.load(str(broken))
    assert "\n" not in str(err.value)


def test_corrupt_config(tmp_path, nano_path):
    broken = tmp_path / "broken"
    shutil.copytree(nano_path, broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(models.ModelError, match="unreadable config.json"):
        models.load(str(broken))


def test_hf_repo_ids_are_passed_through_without_contacting_the_hub():
    assert models.resolve("mlx-community/Qwen3-0.6B-4bit") == ("mlx-community/Qwen3-0.6B-4bit",) * 2
    with pytest.raises(models.ModelError):
        models.resolve("no spaces allowed/here x")


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
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
    a, _ = build.train(recipe, tokenizer, progress=False)
    b, _ = build.train(recipe, tokenizer, progress=False)
    for (name, x), (_, y) in zip(tree_flatten(a.parameters()), tree_flatten(b.parameters())):
        np.testing.assert_array_equal(np.array(x), np.array(y), err_msg=name)


def test_student_is_about_a_quarter_of_default():
    from workbench.build import init_model

    default = models.parameter_count(init_model(build.get_recipe("default")))
    student = models.parameter_count(init_model(build.get_recipe("student")))
    assert 0.18 < student / default < 0.32
