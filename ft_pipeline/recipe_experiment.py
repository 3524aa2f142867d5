"""The recipe's `experiment:` section: variants of one recipe, trained and compared on the
same test rows.

A variant is the recipe with a few knobs of its `training`, `lora` or `model` sections
changed, from a grid (every combination) or a list. Each variant is a partition of
`fine_tuned_adapter` and `evaluation_report`; the data assets are shared (one tokenized
dataset per distinct tokenization, so a `model.base` variant gets its tokenizer's own).
A recipe without the section is a single run, as before.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from ft_pipeline.recipe_data import Int, _Strict

if TYPE_CHECKING:
    from ft_pipeline.recipe import Recipe

# The sections a variant may change: what shapes the adapter, not the data or the gates
# (every variant must be judged on the same rows by the same rule).
VARIABLE_SECTIONS = ("training", "lora", "model")
WINNER_RULE = (
    "the highest lower confidence bound of the gate metric (macro-F1, or token F1 for "
    "generation) on the shared test rows; within 0.001 of it, the variant with the fewest "
    "training CPU-minutes"
)
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ExperimentConfig(_Strict):
    """Variants of this recipe, each trained and evaluated on the same rows; the winner
    (`WINNER_RULE`) is the one `deployed_model` may promote."""

    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="knob -> values; every combination is a variant, e.g. "
        "`training.learning_rate: [5.0e-4, 1.0e-3]`, `lora.r: [8, 16]`. Knobs are dotted "
        "paths into the training, lora or model sections",
    )
    variants: list[dict[str, Any]] = Field(
        default_factory=list,
        description="variants listed one by one, each a mapping knob -> value with an "
        "optional `name` (the partition key); with a grid, each is crossed with every grid "
        "point. An empty mapping is the recipe as written",
    )
    max_variants: Int = Field(
        8, ge=1, le=64, description="most variants the grid and list may expand to"
    )

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for knob, values in grid.items():
            _check_knob(knob)
            if not values:
                raise ValueError(f"experiment.grid.{knob} lists no values")
        return grid

    @field_validator("variants")
    @classmethod
    def _variants(cls, variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, variant in enumerate(variants):
            for knob in variant:
                if knob != "name":
                    _check_knob(knob, f"experiment.variants[{i}]")
            name = variant.get("name")
            if name is not None and not (isinstance(name, str) and _KEY.match(name)):
                raise ValueError(
                    f"experiment.variants[{i}].name {name!r}: use letters, digits, `_`, `.` "
                    "or `-` (at most 64), starting with a letter or digit"
                )
        return variants

    @model_validator(mode="after")
    def _some(self) -> ExperimentConfig:
        if not self.grid and not self.variants:
            raise ValueError("experiment needs a grid or a list of variants")
        return self


def _check_knob(knob: str, where: str = "experiment.grid") -> None:
    section = knob.split(".", 1)[0]
    if section not in VARIABLE_SECTIONS or "." not in knob:
        raise ValueError(
            f"{where}: {knob!r} is not a knob a variant may change; use a dotted path into "
            f"{', '.join(VARIABLE_SECTIONS)} (e.g. training.learning_rate, lora.r, model.base)"
        )


@dataclass(frozen=True)
class Variant:
    """One variant: its partition key, the knobs it sets and the recipe it trains with."""

    name: str
    overrides: dict[str, Any]
    recipe: Recipe


def _points(experiment: ExperimentConfig) -> list[dict[str, Any]]:
    listed = experiment.variants or [{}]
    knobs = list(experiment.grid)
    combos = itertools.product(*experiment.grid.values())
    grid = [dict(zip(knobs, values, strict=True)) for values in combos]
    return [{**point, **variant} for variant in listed for point in grid]


def _short(value: Any) -> str:
    text = str(value).removeprefix("bundled:").rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "x"


def variant_name(overrides: dict[str, Any]) -> str:
    """The partition key of a variant without a `name`: its knobs and values."""
    if not overrides:
        return "as-written"
    parts = [f"{knob.rsplit('.', 1)[-1]}-{_short(value)}" for knob, value in overrides.items()]
    return "_".join(parts)[:64].rstrip("_.-")


def _set(data: dict[str, Any], knob: str, value: Any) -> None:
    *parents, leaf = knob.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value


def expand_variants(recipe: Recipe) -> list[Variant]:
    """The experiment's variants, each a validated recipe without the experiment section
    (whose dataset is the recipe's own unless its tokenization differs); [] without one."""
    from ft_pipeline.recipe import RecipeError, parse_recipe

    experiment = recipe.experiment
    if experiment is None:
        return []
    points = _points(experiment)
    if len(points) > experiment.max_variants:
        raise RecipeError(
            f"experiment expands to {len(points)} variants, more than experiment.max_variants "
            f"({experiment.max_variants}): trim the grid or raise max_variants"
        )
    plain = recipe.model_dump(mode="json") | {"experiment": None}
    tokenization = recipe.tokenization_hash()
    variants, seen = [], {}
    for point in points:
        overrides = {k: v for k, v in point.items() if k != "name"}
        name = point.get("name") or variant_name(overrides)
        if name in seen:
            raise RecipeError(
                f"experiment: variants {seen[name]} and {overrides} are both named {name!r}; "
                "give them distinct `name`s"
            )
        seen[name] = overrides
        data = copy.deepcopy(plain)
        for knob, value in overrides.items():
            _set(data, knob, value)
        child = parse_recipe(data, origin=f"experiment variant {name!r}")
        if child.tokenization_hash() != tokenization:
            child = child.with_dataset(f"{recipe.name}@{child.tokenization_hash()[:8]}")
        variants.append(Variant(name, overrides, child))
    return variants
