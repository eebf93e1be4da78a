"""Classification metrics (from scikit-learn) and the confusion-matrix figure."""
import json
import os
from typing import Any, Dict, Optional, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


def compute_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> Dict[str, Any]:
    """Accuracy (WA), unweighted accuracy (mean per-class recall), macro-F1 and a per-class report.

    UA and macro-F1 average over the classes present in `y_true`, so a class missing from a small
    test set does not count as a zero.
    """
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    all_classes = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=all_classes, zero_division=0)
    present = support > 0
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "unweighted_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                             "f1": float(f1[i]), "support": int(support[i])}
                      for i, name in enumerate(labels)},
        "labels": list(labels),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=all_classes).tolist(),
        "num_samples": int(len(y_true)),
    }


def add_speaker_balanced(metrics: Dict[str, Any], y_true: np.ndarray, probabilities: np.ndarray,
                         speakers: Sequence[Optional[str]]) -> Dict[str, Any]:
    """Add metrics["speaker_balanced"]: the accuracy, UA, macro-F1 and confusion matrix of the
    decisions balanced per speaker (mser.speaker_balance), and how many speakers were balanced;
    nothing when no speaker of the list has enough clips. Returns `metrics`."""
    from mser.speaker_balance import balance_per_speaker, balanced_speaker_count
    count = balanced_speaker_count(speakers, probabilities.shape[1])
    if count:
        balanced = compute_metrics(y_true, balance_per_speaker(probabilities, speakers).argmax(axis=1),
                                   metrics["labels"])
        metrics["speaker_balanced"] = {key: balanced[key] for key in
                                       ("accuracy", "unweighted_accuracy", "macro_f1", "confusion_matrix")}
        metrics["speaker_balanced"]["speakers"] = count
    return metrics


def format_report(metrics: Dict[str, Any]) -> str:
    """A plain-text summary and per-class precision/recall/F1 table."""
    width = max(12, *(len(name) for name in metrics["labels"]))
    lines = [f"accuracy {metrics['accuracy']:.4f} | unweighted accuracy {metrics['unweighted_accuracy']:.4f}"
             f" | macro-F1 {metrics['macro_f1']:.4f} | {metrics['num_samples']} clips",
             f"{'label':<{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}"]
    for name in metrics["labels"]:
        row = metrics["per_class"][name]
        lines.append(f"{name:<{width}} {row['precision']:>9.4f} {row['recall']:>9.4f} "
                     f"{row['f1']:>9.4f} {row['support']:>8d}")
    if "speaker_balanced" in metrics:
        balanced = metrics["speaker_balanced"]
        lines.append(f"decisions balanced per speaker ({balanced['speakers']} speakers; assumes each speaker's "
                     f"clips cover the emotions evenly): accuracy {balanced['accuracy']:.4f} | unweighted "
                     f"accuracy {balanced['unweighted_accuracy']:.4f} | macro-F1 {balanced['macro_f1']:.4f}")
    return "\n".join(lines)


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str,
                          title: str = "Confusion matrix") -> str:
    """Row-normalised confusion matrix with counts, saved as PNG. Returns the path."""
    figure = confusion_matrix_figure(matrix, labels, title)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(figure)
    return path


def confusion_matrix_figure(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    counts = np.asarray(matrix, dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = max(4.0, 0.9 * len(labels) + 2)
    figure, axes = plt.subplots(figsize=(size, size * 0.85))
    image = axes.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    ticks = np.arange(len(labels))
    axes.set_xticks(ticks, labels=labels, rotation=45, ha="right")
    axes.set_yticks(ticks, labels=labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for row in range(len(labels)):
        for col in range(len(labels)):
            value = normalised[row, col]
            axes.text(col, row, f"{value:.2f}\n({int(counts[row, col])})", ha="center", va="center",
                      fontsize=8, color="white" if value > 0.5 else "black")
    figure.tight_layout()
    return figure


def write_evaluation(metrics: Dict[str, Any], labels: Sequence[str], output_dir: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    plot_confusion_matrix(metrics["confusion_matrix"], labels, os.path.join(output_dir, "confusion_matrix.png"),
                          title=f"UA {metrics['unweighted_accuracy']:.3f}, accuracy {metrics['accuracy']:.3f}")
