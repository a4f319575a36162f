"""Recipes: the default one is the built-in defaults, the paper's is one flag away."""

from __future__ import annotations

import json

import pytest

from diffprune.cli.main import build_parser
from diffprune.cli.train import settings_from_args
from diffprune.config import DiffPruneConfig
from diffprune.training.presets import load_recipe, recipe_names
from diffprune.training.settings import TrainSettings


def _parse(*argv):
    return settings_from_args(build_parser().parse_args(["train", *argv]))


def test_the_default_recipe_file_is_the_built_in_defaults():
    recipe = load_recipe("default")
    config, settings = DiffPruneConfig(), TrainSettings()
    assert recipe["diffprune"] and recipe["train"]
    for key, value in recipe["diffprune"].items():
        assert getattr(config, key) == value, key
    for key, value in recipe["train"].items():
        assert getattr(settings, key) == value, key
    assert _parse("--recipe", "default") == _parse()[:1] + (
        TrainSettings(recipe="default"),)


def test_the_paper_recipe_is_one_flag_away_and_flags_override_it():
    config, settings = _parse("--recipe", "paper")
    assert config.density_control == "fixed" and config.diff_lr == 1e-5
    assert config.head_lr is None and settings.batch_size == 8
    assert (settings.epochs, settings.mask_epochs, settings.mask_lr) == (3.0, 3.0, 5e-5)
    config, settings = _parse("--recipe", "paper", "--mask-epochs", "5", "--diff-lr", "2e-5")
    assert settings.mask_epochs == 5.0 and config.diff_lr == 2e-5


@pytest.mark.parametrize("name", recipe_names())
def test_every_shipped_recipe_builds_valid_settings(name):
    config, settings = _parse("--recipe", name)
    assert isinstance(config, DiffPruneConfig) and settings.recipe == name


def test_a_recipe_file_then_a_config_file_then_flags(tmp_path):
    recipe = tmp_path / "mine.json"
    recipe.write_text(json.dumps({"about": "x", "train": {"batch_size": 4, "epochs": 5},
                                  "diffprune": {"target_multiple": 3.0}}))
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({"train": {"epochs": 6}}))
    config, settings = _parse("--recipe", str(recipe), "--config", str(config_file),
                              "--batch-size", "2")
    assert (settings.batch_size, settings.epochs, config.target_multiple) == (2, 6.0, 3.0)


@pytest.mark.parametrize("content, message", [
    ("not json", "not a valid JSON recipe"),
    ('{"nonsense": {}}', "unknown sections"),
    ('{"train": []}', "must be a JSON object"),
    ('{"train": {"no_such_field": 1}}', "no_such_field"),
])
def test_bad_recipes_are_refused_naming_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises((ValueError, TypeError), match=message):
        _parse("--recipe", str(path))


def test_an_unknown_recipe_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="paper"):
        _parse("--recipe", "nope")
