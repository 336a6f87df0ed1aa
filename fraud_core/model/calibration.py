"""Platt scaling: map raw logits to calibrated fraud probabilities, ``sigmoid(a * logit + b)``.

Written here because scikit-learn's Platt fit is private (``_sigmoid_calibration``) and its
public route (``CalibratedClassifierCV``) needs a classifier object, not logits; a test checks
that both fits agree.
"""

from __future__ import annotations

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def fit_platt(logits: np.ndarray, labels: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """Fit ``(a, b)`` by Newton's method on the log-loss (with Platt's label smoothing)."""
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if y.all() or not y.any():
        raise ValueError("calibration needs both fraud and non-fraud labels")
    pos, neg = y.sum(), (~y).sum()
    target = np.where(y, (pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0))
    a, b = 1.0, 0.0
    for _ in range(iterations):
        p = sigmoid(a * x + b)
        w = np.maximum(p * (1 - p), 1e-12)
        grad = np.array([np.sum((p - target) * x), np.sum(p - target)])
        hess = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        step = np.linalg.solve(hess + 1e-9 * np.eye(2), grad)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-9:
            break
    return float(a), float(b)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Mean |predicted - observed| fraud rate over equal-count bins, weighted by bin size."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    order = np.argsort(p)
    total = 0.0
    for chunk in np.array_split(order, bins):
        if chunk.size:
            total += chunk.size * abs(p[chunk].mean() - y[chunk].mean())
    return float(total / max(p.size, 1))
