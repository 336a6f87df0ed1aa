"""The training config file: validated, and a bigger search is one edit."""

import json
from pathlib import Path

import pydantic
import pytest

from metaflow_jobs.settings import DEFAULT_CONFIG, parse_settings


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
    assert len(settings["grid"]) == 2
    assert {tuple(p["hidden"]) for p in settings["grid"]} == {(64, 32), (128, 64)}


def test_a_bigger_search_is_one_change() -> None:
    settings = parse_settings(_config(search__lr=[0.001, 0.003, 0.01], search__dropout=[0.0, 0.2]))
    assert len(settings["grid"]) == 2 * 3 * 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"search__lr": [-0.1]}, "greater than 0"),
        ({"search__hidden": []}, "at least 1 item"),
        ({"split__val_fraction": 0.45, "split__test_fraction": 0.45}, "at least 20% for training"),
        ({"training__patience": 0}, "greater than or equal to 1"),
        ({"search__momentum": [0.9]}, "Extra inputs are not permitted"),
    ],
)
def test_bad_configs_are_refused(changes, message) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        parse_settings(_config(**changes))
