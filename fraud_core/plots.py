"""Plots people would rather look at than read: PR curves, calibration. PNG bytes out."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(5.5, 4.0), dpi=100)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def pr_curves_png(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str) -> bytes:
    """Precision-recall curves; ``curves`` maps a label to (precision, recall, AP)."""
    fig, ax = _figure()
    for label, (precision, recall, ap) in curves.items():
        ax.step(recall, precision, where="post", label=f"{label} (AP {ap:.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def calibration_png(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> bytes:
    """Predicted vs observed fraud rate over equal-count bins."""
    order = np.argsort(probs)
    chunks = [c for c in np.array_split(order, bins) if c.size]
    predicted = [float(np.mean(probs[c])) for c in chunks]
    observed = [float(np.mean(labels[c])) for c in chunks]
    fig, ax = _figure()
    top = max(max(predicted), max(observed), 1e-3) * 1.05
    ax.plot([0, top], [0, top], ls="--", color="grey", label="perfect")
    ax.plot(predicted, observed, marker="o", label="model")
    ax.set_xlabel("predicted fraud probability")
    ax.set_ylabel("observed fraud rate")
    ax.set_title("calibration (held-out claims)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def markdown_image(png: bytes, alt: str) -> str:
    """Inline a PNG into markdown (Dagster renders it in the asset's metadata)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
