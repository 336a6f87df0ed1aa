"""The training config file: validated, and a bigger search is one edit."""

import json
from pathlib import Path

import pydantic
import pytest

from metaflow_jobs.settings import DEFAULT_CONFIG, parse_settings, train_config


def _config(**changes) -> str:
    config = json.loads(Path(DEFAULT_CONFIG).read_text())
    for dotted, value in changes.items():
        node = config
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return json.dumps(config)


def test_default_config_expands_to_the_grid() -> None:
    settings = parse_settings(Path(DEFAULT_CONFIG).read_text())
    points = {(tuple(p["hidden"]), p["seed"]) for p in settings["grid"]}
    assert points == {((64, 32), seed) for seed in range(2)}
    assert settings["training"]["piecewise_bins"] > 0 < settings["training"]["direction_penalty"]


def test_a_branch_seed_is_the_flow_seed_plus_the_points() -> None:
    settings = parse_settings(Path(DEFAULT_CONFIG).read_text())
    seeds = [train_config(settings["training"], p, 100).seed for p in settings["grid"]]
    assert seeds == [100, 101]
    assert train_config(settings["training"], settings["grid"][0], 0).direction_penalty == 1.0


def test_the_lightgbm_baseline_searches_a_grid() -> None:
    lightgbm = parse_settings(Path(DEFAULT_CONFIG).read_text())["lightgbm"]
    assert len(lightgbm["search"]) == 3 and not set(lightgbm["search"]) & set(lightgbm["params"])


def test_a_bigger_search_is_one_change() -> None:
    settings = parse_settings(_config(search__lr=[0.001, 0.003, 0.01], search__dropout=[0.0, 0.2]))
    assert len(settings["grid"]) == 1 * 2 * 3 * 2  # hidden x seed x lr x dropout


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"search__lr": [-0.1]}, "greater than 0"),
        ({"search__hidden": []}, "at least 1 item"),
        ({"split__val_fraction": 0.45, "split__test_fraction": 0.45}, "at least 20% for training"),
        ({"training__patience": 0}, "greater than or equal to 1"),
        ({"search__momentum": [0.9]}, "Extra inputs are not permitted"),
        ({"lightgbm__search__num_leaves": []}, "lists no values for"),
        ({"lightgbm__params__num_leaves": 7}, "both fixed in lightgbm.params and searched"),
        ({"training__direction_penalty": -1.0}, "greater than or equal to 0"),
        ({"training__distill_weight": 1.5}, "less than or equal to 1"),
        ({"training__distill_weight": -0.1}, "greater than or equal to 0"),
        ({"training__teacher_folds": 1}, "greater than or equal to 2"),
    ],
)
def test_bad_configs_are_refused(changes, message) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        parse_settings(_config(**changes))


def test_the_rate_schedule_reaches_each_candidate() -> None:
    settings = parse_settings(_config(training__lr_schedule="plateau", training__lr_factor=0.5))
    config = train_config(settings["training"], settings["grid"][0], 0)
    assert (config.lr_schedule, config.lr_factor) == ("plateau", 0.5)
    with pytest.raises(pydantic.ValidationError, match="'constant', 'cosine' or 'plateau'"):
        parse_settings(_config(training__lr_schedule="step"))


def test_distillation_is_on_by_default_and_reaches_each_candidate() -> None:
    default = parse_settings(Path(DEFAULT_CONFIG).read_text())
    assert train_config(default["training"], default["grid"][0], 0).distill_weight == 0.8
    settings = parse_settings(_config(training__distill_weight=0.0))
    assert train_config(settings["training"], settings["grid"][0], 0).distill_weight == 0.0
