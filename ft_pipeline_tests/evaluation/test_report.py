"""Unit tests for ft_pipeline.lib.evaluation.plots and ft_pipeline.lib.evaluation.report."""

import matplotlib.pyplot as plt
import pytest

from ft_pipeline.lib.evaluation.metrics import classification_metrics, slice_metrics
from ft_pipeline.lib.evaluation.plots import plot_confusion_matrices, plot_loss_curves
from ft_pipeline.lib.evaluation.report import render_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LABELS = ["negative", "neutral", "positive"]


def assert_png(path, min_bytes=2000):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > min_bytes


def test_confusion_plot_is_a_png(tmp_path):
    matrices = {
        "base": [[5, 3, 2], [4, 4, 2], [6, 1, 3]],
        "fine-tuned": [[9, 1, 0], [1, 8, 1], [0, 0, 10]],
        "tfidf": [[8, 2, 0], [0, 0, 0], [1, 1, 8]],  # an empty row must not divide by zero
    }
    before = len(plt.get_fignums())
    out = plot_confusion_matrices(matrices, LABELS, tmp_path / "sub" / "confusion.png")
    assert out == tmp_path / "sub" / "confusion.png"
    assert_png(out, min_bytes=10_000)
    assert len(plt.get_fignums()) == before  # figure closed


def test_loss_curves_tolerate_gaps_and_empty_history(tmp_path):
    history = [
        {"step": 1, "train_loss": 2.5, "val_loss": None, "lr": 1e-4},
        {"step": 2, "train_loss": 2.1, "val_loss": None, "lr": None},
        {"step": 3, "train_loss": None, "val_loss": 2.2, "lr": 9e-5},
        {"step": 4, "train_loss": float("nan"), "val_loss": None},
        {"step": 5, "train_loss": 1.7},
        {"step": 6, "train_loss": 1.6, "val_loss": 1.9, "lr": 5e-5},
    ]
    before = len(plt.get_fignums())
    curves = plot_loss_curves(history, tmp_path / "loss.png")
    empty = plot_loss_curves([], tmp_path / "empty.png")
    blank = plot_loss_curves([{"step": 1, "train_loss": None}], tmp_path / "blank.png")
    for path in (curves, empty, blank):
        assert_png(path)
    assert len(plt.get_fignums()) == before
    # The "no training history" message figure is a different image from a real plot.
    assert curves.read_bytes() != empty.read_bytes()
    assert empty.read_bytes() == blank.read_bytes()


def classification_result():
    y = ["negative"] * 4 + ["neutral"] * 3 + ["positive"] * 3
    base = ["negative"] * 10
    tuned = ["negative"] * 4 + ["neutral", "neutral", "positive"] + ["positive"] * 3
    tfidf = ["negative", "neutral", "negative", "negative"] + ["neutral"] * 3 + ["positive"] * 3
    src = ["file:a.csv"] * 6 + ["incoming:b.csv"] * 4
    preds = {"base": base, "fine-tuned": tuned, "tfidf": tfidf}
    models = {name: classification_metrics(y, p, LABELS) for name, p in preds.items()}
    models["fine-tuned"].update(val_loss=0.4321, perplexity=1.5406)
    models["base"].update(val_loss=2.5, perplexity=12.1825)
    return {
        "recipe": "airline-sentiment",
        "task": "classification",
        "labels": LABELS,
        "data_version": "dv-1234abcd",
        "adapter_key": "adapter-42",
        "test_rows": len(y),
        "models": models,
        "gain": {"gain": 0.7123, "low": 0.3312, "high": 0.9645, "samples": 1000},
        "slices": {name: slice_metrics(y, p, src, LABELS) for name, p in preds.items()},
        "gate": {"passed": True, "reasons": ["macro-F1 gain CI is above 0.05"]},
        "plots": {"confusion": "confusion.png", "loss": "loss.png"},
    }


def test_classification_report_contents():
    result = classification_result()
    report = render_report(result)
    ft = result["models"]["fine-tuned"]["macro_f1"]
    base = result["models"]["base"]["macro_f1"]
    tfidf = result["models"]["tfidf"]["macro_f1"]
    assert report.startswith("# Evaluation: airline-sentiment")
    for text in ("base", "fine-tuned", "TF-IDF baseline", "dv-1234abcd", "adapter-42"):
        assert text in report
    verdict = (
        f"fine-tuned macro-F1 {ft:.2f} vs base {base:.2f} (+0.71, 95% CI +0.33..+0.96); "
        f"TF-IDF baseline {tfidf:.2f}"
    )
    assert verdict in report
    # Table cells: 3 decimals (tabulate drops trailing zeros in all-numeric columns).
    for value in (ft, base, tfidf):
        assert f"{value:.3f}".rstrip("0") in report
    header = next(line for line in report.splitlines() if line.startswith("| model"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "model",
        "accuracy",
        "macro P",
        "macro R",
        "macro F1",
        "val loss",
        "perplexity",
    ]
    assert "0.432" in report and "1.541" in report
    assert "–" in report  # tfidf has no val loss / perplexity
    assert "### fine-tuned" in report and "### TF-IDF baseline" in report
    assert "true \\ predicted" in report
    assert "file:a.csv" in report and "incoming:b.csv" in report
    assert "**Passed**" in report and "- macro-F1 gain CI is above 0.05" in report
    assert "![confusion](confusion.png)" in report
    assert "![loss](loss.png)" in report


def test_confusion_and_slice_tables_hold_the_numbers():
    result = classification_result()
    report = render_report(result)
    section = report.split("### fine-tuned")[1].split("###")[0]
    rows = [line for line in section.splitlines() if line.startswith("| neutral")]
    assert len(rows) == 1
    assert [c.strip() for c in rows[0].strip("|").split("|")] == ["neutral", "0", "2", "1"]
    slices = report.split("## Macro-F1 by slice")[1].split("##")[0]
    header = next(line for line in slices.splitlines() if line.startswith("| slice"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "slice",
        "base",
        "fine-tuned",
        "TF-IDF baseline",
        "n",
    ]
    a_row = next(line for line in slices.splitlines() if "file:a.csv" in line)
    cells = [c.strip() for c in a_row.strip("|").split("|")]
    assert cells[-1] == "6"  # n of the slice
    # fine-tuned is right on every row of that slice, but "positive" has no rows there and
    # still counts in the macro average as 0: 2/3.
    assert float(cells[2]) == pytest.approx(2 / 3, abs=5e-4)
    b_row = next(line for line in slices.splitlines() if "incoming:b.csv" in line)
    assert [c.strip() for c in b_row.strip("|").split("|")][-1] == "4"


def test_failed_gate_and_missing_gain():
    result = classification_result()
    result["gate"] = {"passed": False, "reasons": ["gain CI crosses zero", "worse than TF-IDF"]}
    del result["gain"]
    report = render_report(result)
    assert "**Failed**" in report and "Gate: **failed**" in report
    assert "- gain CI crosses zero" in report and "- worse than TF-IDF" in report
    assert "CI" not in report.split("## Verdict")[1].split("##")[0].replace("CI crosses", "")


def test_instruction_report():
    result = {
        "recipe": "support-answers",
        "task": "instruction",
        "data_version": "dv-9",
        "adapter_key": "adapter-7",
        "test_rows": 50,
        "models": {
            "base": {"exact_match": 0.12, "token_f1": 0.314, "val_loss": 2.25, "perplexity": 9.49},
            "fine-tuned": {
                "exact_match": 0.46,
                "token_f1": 0.712,
                "val_loss": 0.875,
                "perplexity": 2.399,
            },
        },
        "gate": {"passed": True, "reasons": []},
        "plots": {"loss": "loss.png"},
    }
    report = render_report(result)
    header = next(line for line in report.splitlines() if line.startswith("| model"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "model",
        "exact match",
        "token F1",
        "val loss",
        "perplexity",
    ]
    assert "fine-tuned token F1 0.71 vs base 0.31 (+0.40); exact match 0.46 vs 0.12" in report
    assert "0.712" in report and "2.399" in report and "0.875" in report
    assert "macro F1" not in report
    assert "Confusion" not in report and "slice" not in report
    assert "**Passed**" in report
    assert "![loss](loss.png)" in report


@pytest.mark.parametrize(
    ("gain", "low", "high", "says"),
    [
        (-0.10, -0.15, -0.05, "**The TF-IDF baseline beats the fine-tuned model on these rows**"),
        (-0.02, -0.06, 0.03, "**The TF-IDF baseline scores higher than the fine-tuned model**"),
        (0.02, -0.02, 0.06, "The fine-tuned model is within noise of the TF-IDF baseline"),
        (0.10, 0.05, 0.15, "The fine-tuned model beats the TF-IDF baseline"),
    ],
)
def test_the_report_says_plainly_how_the_model_compares_with_tfidf(gain, low, high, says):
    result = classification_result()
    result["baseline_gain"] = {"gain": gain, "low": low, "high": high, "confidence": 0.95}
    verdict = render_report(result).split("## Verdict")[1].split("## ")[0]
    assert says in verdict
    assert (
        f"fine-tuned minus TF-IDF {gain:+.3f} macro-F1, paired 95% CI {low:+.3f}..{high:+.3f}"
        in verdict
    )


def test_generation_samples_come_first_side_by_side():
    from ft_pipeline.lib.evaluation.job import answer_samples

    rows = [
        {"text": "say alpha bravo", "response": "bravo alpha"},
        {
            "text": None,
            "response": "hi",
            "messages": [
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "x"},
                {"role": "user", "content": "greet me | now"},
            ],
        },
    ]
    samples = answer_samples(rows, ["alpha", "hello"], ["bravo alpha", "hi"])
    assert samples[1] == {
        "prompt": "greet me | now",
        "reference": "hi",
        "base": "hello",
        "fine_tuned": "hi",
    }
    report = render_report({"task": "instruction", "models": {}, "samples": samples})
    assert report.index("## Sample answers") < report.index("## Verdict")
    assert "| say alpha bravo | bravo alpha | alpha | bravo alpha |" in report.replace("  ", " ")
    assert "greet me \\| now" in report
