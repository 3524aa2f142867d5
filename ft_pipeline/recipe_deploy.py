"""The recipe's deployment half: serving limits, the model card, the counterfactual probe and
drift on new data.

None of these sections shapes training (they are outside the adapter key), so changing them
never retrains. `counterfactual` is part of the evaluation report's key (the probe runs there),
`drift` of the drift check's. Every knob has a default that suits the task.
"""

from __future__ import annotations

from pydantic import Field

from ft_pipeline.recipe_data import Float, Int, _Strict


class ServingConfig(_Strict):
    """Limits of the served model (`make serve`); each one can be overridden where the model
    is served, without re-registering, by an environment variable (named in its description)."""

    batch_size: Int = Field(
        32,
        ge=1,
        le=4096,
        description="rows per forward pass inside one request (env FT_SERVING_BATCH_SIZE)",
    )
    max_rows: Int = Field(
        4096,
        ge=1,
        description="most rows in one request; a larger request gets a 400 naming the limit "
        "(env FT_SERVING_MAX_ROWS)",
    )
    max_request_chars: Int = Field(
        16_000_000,
        ge=1,
        description="most characters of text in one request, all rows together; a larger "
        "request gets a 400 naming the limit (env FT_SERVING_MAX_REQUEST_CHARS)",
    )


class CardConfig(_Strict):
    """What the model card (the deployment's README.md and the registered model's description
    in MLflow) says the model is for; null: a default for the task."""

    intended_use: str | None = Field(
        None,
        description="what the model is for and who should use it; null: a sentence for the "
        "task built from the labels and the data sources",
    )
    out_of_scope: str | None = Field(
        None,
        description="uses the model is not meant for; null: a default for the task (other "
        "domains and languages than the training data, decisions about people without review)",
    )
    limitations: list[str] = Field(
        default_factory=list,
        description="known limitations to add to the measured ones (truncation rate, label "
        "confusions, the classical baseline's result)",
    )


class CounterfactualConfig(_Strict):
    """The counterfactual probe: identity terms in the test texts swapped for others of their
    group (gender words, first names, nationalities, religions), the model re-scored."""

    enabled: bool = Field(True, description="run the probe in evaluation_report")
    max_flip_rate: Float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="WARN check evaluation_report_counterfactual_stability: the share of "
        "swapped texts whose prediction changes must stay at or below this, in every group",
    )
    max_rows: Int = Field(
        300,
        ge=1,
        description="most swapped test texts scored per group (texts with no term of the group "
        "are not swapped)",
    )
    terms: dict[str, list[list[str]]] = Field(
        default_factory=dict,
        description="more term sets, by group: each set lists terms that are swapped for one "
        "another (`gender: [[nephew, niece]]`); a group not shipped is added",
    )


class DriftConfig(_Strict):
    """Each new landing partition against the champion's training data (WARN check
    cleaned_data_drift), and the champion's scores on the new rows (shadow scoring)."""

    enabled: bool = Field(True, description="compare new partitions with the training data")
    max_label_shift: Float = Field(
        0.15,
        ge=0.0,
        le=1.0,
        description="most total-variation distance between the label shares of the new rows "
        "and of the champion's training rows",
    )
    max_length_shift: Float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="most Kolmogorov-Smirnov distance between the text lengths (characters)",
    )
    max_oov_increase: Float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="most rise in the share of words the champion's tokenizer splits into "
        "unknown or byte-fallback pieces, new rows against training rows",
    )
    shadow_rows: Int = Field(
        500,
        ge=0,
        description="new rows the champion scores (shadow scoring; 0: none); its accuracy and "
        "macro-F1 on them are in the check's metadata where the rows carry labels",
    )
