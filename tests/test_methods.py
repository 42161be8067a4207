"""Every method named once (fairseq_maskplug/methods.py): each hydra recipe
trains the method that names it, and each method that names a recipe has
it. (The README's switch-over rows and fairseq-train examples are checked
against the same registry in test_readme_commands.)"""

import dataclasses

import pytest
import yaml

from fairseq_maskplug.criterions.mapnet_masked_lm import MapnetMaskedLMConfig
from fairseq_maskplug.methods import FE_COPIES, METHODS
from fairseq_maskplug.tasks.config import FullyExploredMaskedLMConfig, MaskedLMPlusConfig, TimeVariantMaskedLMConfig
from harness import REPO_ROOT

RECIPE_DIR = REPO_ROOT / "fairseq_maskplug" / "config" / "pretraining"
RECIPE_METHODS = {method.recipe: name for name, method in METHODS.items() if method.recipe}
# a task preset is masked_lm_plus with its own defaults
TASKS = {
    "masked_lm_plus": MaskedLMPlusConfig,
    "fully_explored_masked_lm": FullyExploredMaskedLMConfig,
    "time_variant_masked_lm": TimeVariantMaskedLMConfig,
}
# what a recipe sets for its size and data, not for its method
NOT_THE_METHOD = {"task": {"data", "tokens_per_sample", "sample_break_mode"},
                  "model": {"max_positions", "dropout", "attention_dropout", "decoder_layers"}}  # fmt: skip


def defaults(config) -> dict:
    return {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}


def selection(flags) -> dict:
    """{group: {option: value}} of what ``flags`` select, on top of a stock
    RoBERTa recipe (``--criterion masked_lm``, a ``roberta`` model); a preset
    task as masked_lm_plus with its defaults."""
    chosen = {"task": {}, "criterion": {"_name": "masked_lm"}, "model": {"_name": "roberta"}}
    mapnet, task_fields = defaults(MapnetMaskedLMConfig), defaults(MaskedLMPlusConfig)
    i = 0
    while i < len(flags):
        name = flags[i].removeprefix("--").replace("-", "_")
        value = flags[i + 1] if i + 1 < len(flags) and not flags[i + 1].startswith("--") else True
        i += 1 if value is True else 2
        if name == "task":
            preset = TASKS[value]
            chosen["task"] |= {"_name": "masked_lm_plus"} | {
                key: default for key, default in defaults(preset).items() if task_fields.get(key) != default
            }
        elif name == "criterion":
            chosen["criterion"]["_name"] = value
        elif name == "arch":
            chosen["model"]["_name"] = value
        else:
            group = "task" if name in task_fields else "criterion" if name in mapnet else "model"
            chosen[group][name] = value
    return chosen


def recipe_selection(recipe: dict) -> dict:
    """The same for a recipe: its options that differ from their defaults,
    without those that size it or point at its data."""
    task_defaults, criterion_defaults = defaults(MaskedLMPlusConfig), defaults(MapnetMaskedLMConfig)
    task_defaults["fe_segments"] = FE_COPIES  # 0: round(1 / --mask-prob), 7 at the default 0.15
    criterion = recipe["criterion"] if isinstance(recipe["criterion"], dict) else {"_name": recipe["criterion"]}
    chosen = {
        "task": {k: v for k, v in recipe["task"].items() if k == "_name" or task_defaults.get(k) != v},
        "criterion": {k: v for k, v in criterion.items() if k == "_name" or criterion_defaults.get(k) != v},
        "model": dict(recipe["model"]),
    }
    for group, skipped in NOT_THE_METHOD.items():
        chosen[group] = {k: v for k, v in chosen[group].items() if k not in skipped}
    return chosen


def normalised(chosen: dict) -> dict:
    """Values as text (flags are text; yaml has numbers and booleans)."""

    def text(value):
        try:
            return repr(float(value))
        except ValueError:
            return str(value).lower()

    return {group: {k: text(v) for k, v in options.items()} for group, options in chosen.items()}


def test_every_recipe_belongs_to_one_method():
    assert sorted(RECIPE_METHODS) == sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


@pytest.mark.parametrize("recipe", sorted(RECIPE_METHODS))
def test_each_recipe_selects_exactly_its_methods_options(recipe):
    """A recipe's task, criterion, model and every option it sets away from
    the default are its method's flags, and nothing else (sizes and data
    aside); the stock masked_lm task and fairseq's own defaults stand for
    what a method does not set."""
    found = recipe_selection(yaml.safe_load((RECIPE_DIR / f"{recipe}.yaml").read_text()))
    expected = selection(METHODS[RECIPE_METHODS[recipe]].flags)
    assert normalised(found) == normalised(expected), recipe
