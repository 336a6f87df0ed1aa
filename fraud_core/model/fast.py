"""FraudNet's eval-mode forward pass without torch, with a gradient x input attribution.

The scoring API computes one claim at a time, where per-call overhead dominates, not
arithmetic: a 1-row forward pass is fastest as one numba-compiled kernel, then as a dozen numpy
calls, then in TorchScript, then in eager torch (``make bench-serve`` records the four side by
side: ``bench/serve.py``). So one claim goes through :func:`_one_claim` (compiled on first use
and cached), and batches through vectorised numpy (:meth:`NumpyForward.logits`,
:meth:`NumpyForward.explain`). Both compute the same network's numbers:
:meth:`NumpyForward.from_bundle` copies the weights and the preprocessing buffers out of the
trained :class:`~fraud_core.model.network.FraudNet`, in float32 as torch computes them, and
refuses an architecture it does not know rather than guess.

Two rewrites keep it cheap, both exact: dropout is the identity in eval mode, and the first
linear layer applied to a category's embedding is folded into one lookup table per category
column (``W1[:, slice] @ embedding.T``), so an embedding lookup and its share of the first
matrix product become one row gather.

A network with the piecewise-linear encoding
(:class:`~fraud_core.model.preprocessing.PiecewiseLinear`) adds, per numeric feature, its ramp
over the bins times the first layer's weights for them: in the one-claim kernel, a loop over
the bins the value has reached (the rest encode as zeros and add nothing), where the bins it
fills add their weights summed in advance, one row per feature.

An ensemble (:func:`~fraud_core.model.network.average_of`) is one wider network whose later
layers are block-diagonal: the one-claim kernel visits each weight row only over its nonzero
run (:func:`_nonzero_spans`), so the members' zeros cost nothing. Its backward pass sums over a
layer's outputs with the transposed weights, output by output, in the order a per-input loop
would: contiguous rows the compiler vectorises. The input gradients of the attribution are dot
products over the first layer's units, summed in whatever order vectorises (``_dot``).

Attribution is *gradient x input* in the space the MLP sees: for a numeric feature, the
standardized value ``z`` (after log1p, centring on the training mean, scaling and clipping; 0
is the training mean) times ``d logit / d z``; for a category, the embedding vector times the
gradient with respect to it, summed over the embedding's dimensions; a numeric feature's
piecewise-linear encoding adds its bins' ramp values times their gradients to that feature.
Each contribution is in logit units: a first-order estimate of how far that input moves the
claim's logit away from a claim sitting at the training mean. The gradient of a ReLU network
is exact and cheap to get by hand (one backward matrix product per layer), so no autograd is
involved.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import numba
import numpy as np
import torch
from torch import nn

from fraud_core.model.bundle import BundleError, ModelBundle
from fraud_core.model.calibration import sigmoid
from fraud_core.model.network import FraudNet


class ForwardArrays(NamedTuple):
    """The arrays the one-claim kernels read: :class:`NumpyForward`'s of the same names, and
    the later hidden layers packed.

    The kernels take them as trailing positional arguments (``*arrays``: numba unboxes
    positional arrays fastest) and name them again with ``ForwardArrays(*arrays)``.

    Attributes:
        range_low, range_high: per numeric feature, the training range the encoding holds a
            value to (unused without the encoding).
        hidden_flat: each later hidden layer's ``(in, out)`` weights then its bias, one layer
            after another.
        hidden_flat_t: the same layers' weights transposed, ``(out, in)``, for the backward
            pass (a sum over a layer's outputs becomes contiguous rows the compiler vectorises).
        hidden_spans: per later layer, for each input the run of outputs its weights reach
            (first, stop), then for each output the run of inputs that reach it: an ensemble's
            layers are block-diagonal (:func:`~fraud_core.model.network.average_of`), and the
            zeros outside the blocks are skipped, not multiplied.
        widths: the width of every hidden layer, the first included.
        piecewise_cum: per feature, the sums of the first layer's weights over its first
            ``t`` bins, ``(f, bins + 1, h1)``: a value past ``t`` bins adds their weights in
            one row instead of ``t``.
    """

    log_mask: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    numeric_weight: np.ndarray
    first_bias: np.ndarray
    category_table: np.ndarray
    category_offsets: np.ndarray
    range_low: np.ndarray
    range_high: np.ndarray
    hidden_flat: np.ndarray
    hidden_flat_t: np.ndarray
    hidden_spans: np.ndarray
    widths: np.ndarray
    output_weight: np.ndarray
    output_bias: np.float32
    piecewise_low: np.ndarray
    piecewise_width: np.ndarray
    piecewise_weight: np.ndarray
    piecewise_cum: np.ndarray


@dataclass(frozen=True)
class NumpyForward:
    """The arrays of one trained network, ready for numpy inference.

    Attributes:
        numeric: numeric input names, in column order.
        categorical: category input names, in column order.
        log_mask, mean, std: the Standardize layer (log1p columns, then ``(x - mean) / std``).
        numeric_weight: the first layer's weights for the standardized numerics, ``(f, h1)``.
        category_table: every category column's embedding folded into the first layer, stacked:
            column ``j``'s code ``k`` (0 is 'unknown') is row ``category_offsets[j] + k``.
        category_offsets: first row of each category column in ``category_table``.
        first_bias: the first layer's bias ``(h1,)``.
        hidden: the later hidden layers, ``(weight (in, out), bias (out,))`` each.
        output_weight, output_bias: the final linear layer to one logit.
        calibration: Platt ``(a, b)``: probability ``sigmoid(a * logit + b)``.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    log_mask: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    numeric_weight: np.ndarray
    category_table: np.ndarray
    category_offsets: np.ndarray
    first_bias: np.ndarray
    hidden: tuple[tuple[np.ndarray, np.ndarray], ...]
    output_weight: np.ndarray
    output_bias: np.float32
    calibration: tuple[float, float]
    # The piecewise-linear encoding (absent: zero bins): per feature and bin, the bin's low
    # edge and width ``(f, bins)``, and the first layer's weights for it, ``(f * bins, h1)``.
    piecewise_low: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    piecewise_width: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    piecewise_weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    # float32 constants, so no Python scalar is converted per call
    _zero: np.float32 = np.float32(0.0)
    _low: np.float32 = np.float32(-8.0)
    _high: np.float32 = np.float32(8.0)
    # With the encoding, numerics are held to the training range before standardizing.
    _range: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    # For one claim at a time (see explain_one): the arrays of the kernels, gathered once.
    _kernel_arrays: ForwardArrays = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.piecewise_low.size == 0:  # no encoding: (f, 0) edges, (0, h1) weights
            f, h1 = self.numeric_weight.shape
            object.__setattr__(self, "piecewise_low", np.zeros((f, 0), np.float32))
            object.__setattr__(self, "piecewise_width", np.ones((f, 0), np.float32))
            object.__setattr__(self, "piecewise_weight", np.zeros((0, h1), np.float32))
        else:  # as PiecewiseLinear.edges: the lowest and the highest finite edge
            low, width = self.piecewise_low, self.piecewise_width
            tops = np.where(np.isfinite(width), low + width, low).max(axis=1)
            object.__setattr__(self, "_range", (low[:, 0].copy(), tops.astype(np.float32)))
        flat = [np.concatenate([w.ravel(), b]) for w, b in self.hidden]
        packed = np.concatenate(flat) if flat else np.zeros(0, np.float32)
        flat_t = [w.T.ravel() for w, _ in self.hidden]
        packed_t = np.concatenate(flat_t) if flat_t else np.zeros(0, np.float32)
        spans = [
            np.concatenate([_nonzero_spans(w), _nonzero_spans(w.T)]).ravel() for w, _ in self.hidden
        ]
        f = self.numeric_weight.shape[0]
        low, high = self._range if self._range is not None else (np.zeros(f), np.zeros(f))
        widths = [self.numeric_weight.shape[1]] + [w.shape[1] for w, _ in self.hidden]
        (f, bins), h1 = self.piecewise_low.shape, self.numeric_weight.shape[1]
        per_bin = self.piecewise_weight.astype(np.float64).reshape(f, bins, h1)
        cum = np.zeros((f, bins + 1, h1), np.float64)
        np.cumsum(per_bin, axis=1, out=cum[:, 1:])  # summed in float64, rounded once
        packed_arrays: dict[str, Any] = {
            "hidden_flat": np.ascontiguousarray(packed, dtype=np.float32),
            "hidden_flat_t": np.ascontiguousarray(packed_t, dtype=np.float32),
            "hidden_spans": np.concatenate(spans) if spans else np.zeros(0, np.int64),
            "range_low": np.ascontiguousarray(low, dtype=np.float32),
            "range_high": np.ascontiguousarray(high, dtype=np.float32),
            "widths": np.array(widths, dtype=np.int64),
            "piecewise_cum": np.ascontiguousarray(cum, dtype=np.float32),
        }
        arrays: dict[str, Any] = {  # the rest are this network's arrays of the same names
            name: packed_arrays[name] if name in packed_arrays else getattr(self, name)
            for name in ForwardArrays._fields
        }
        object.__setattr__(self, "_kernel_arrays", ForwardArrays(**arrays))

    @classmethod
    def from_bundle(cls, bundle: ModelBundle) -> NumpyForward:
        """Copy a bundle's network into numpy arrays.

        Raises:
            BundleError: the network is not the ``Standardize, embeddings[, piecewise-linear]
                -> (Linear, ReLU, Dropout)* -> Linear`` shape this module reproduces.
        """
        return cls.from_net(
            bundle.net, tuple(bundle.vocabulary.values), bundle.calibration, bundle.version
        )

    @classmethod
    def from_net(
        cls,
        net: FraudNet,
        categorical: tuple[str, ...],
        calibration: tuple[float, float] = (1.0, 0.0),
        version: str = "candidate",
    ) -> NumpyForward:
        """Copy ``net``'s arrays (see :meth:`from_bundle`); ``categorical`` names its tables."""
        linears: list[nn.Linear] = []
        for i, module in enumerate(net.mlp):
            if isinstance(module, nn.Linear):
                linears.append(module)
            elif not isinstance(module, nn.ReLU | nn.Dropout):
                raise BundleError(
                    f"bundle {version}: layer {i} of the MLP is {type(module).__name__}; the "
                    "numpy forward pass knows Linear, ReLU and Dropout only"
                )
        kinds = [type(m) for m in net.mlp if not isinstance(m, nn.Dropout)]
        expected = [nn.Linear, nn.ReLU] * (len(linears) - 1) + [nn.Linear]
        if len(linears) < 2 or kinds != expected:
            raise BundleError(
                f"bundle {version}: the MLP is not (Linear, ReLU[, Dropout])+ then Linear"
            )
        tables = list(net.embeddings.tables)
        if len(tables) != len(categorical):
            raise BundleError(
                f"bundle {version}: {len(tables)} embedding tables for {len(categorical)} "
                "category columns"
            )

        def arr(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))

        n_numeric = len(net.config.numeric)
        first = linears[0]
        w1 = arr(first.weight)  # (h1, in)
        category_tables: list[np.ndarray] = []
        start = n_numeric
        for table in tables:
            emb = arr(cast(nn.Embedding, table).weight)  # (cardinality + 1, dim)
            stop = start + emb.shape[1]
            category_tables.append(np.ascontiguousarray(emb @ w1[:, start:stop].T))
            start = stop
        empty = np.zeros((0, 0), np.float32)
        piecewise_low, piecewise_width, piecewise_weight = empty, empty, empty
        if net.piecewise is not None:
            stop = start + net.piecewise.out_features
            piecewise_low, piecewise_width = arr(net.piecewise.low), arr(net.piecewise.width)
            piecewise_weight = np.ascontiguousarray(w1[:, start:stop].T)
            start = stop
        if start != w1.shape[1]:
            raise BundleError(f"bundle {version}: first layer width does not match its inputs")
        output = linears[-1]
        if output.out_features != 1:
            raise BundleError(f"bundle {version}: the network has {output.out_features} outputs")
        standardize = net.standardize
        return cls(
            numeric=tuple(net.config.numeric),
            categorical=tuple(categorical),
            log_mask=standardize.log_mask.detach().cpu().numpy().astype(bool),
            mean=arr(standardize.mean),
            std=arr(standardize.std),
            numeric_weight=np.ascontiguousarray(w1[:, :n_numeric].T),
            category_table=np.concatenate(category_tables, axis=0)
            if category_tables
            else np.zeros((1, w1.shape[0]), np.float32),
            category_offsets=np.cumsum([0] + [len(t) for t in category_tables[:-1]]).astype(
                np.int64
            ),
            first_bias=arr(first.bias),
            hidden=tuple(
                (np.ascontiguousarray(arr(m.weight).T), arr(m.bias)) for m in linears[1:-1]
            ),
            output_weight=arr(output.weight)[0],
            output_bias=np.float32(output.bias.detach()[0].item()),
            calibration=(float(calibration[0]), float(calibration[1])),
            piecewise_low=piecewise_low,
            piecewise_width=piecewise_width,
            piecewise_weight=piecewise_weight,
        )

    # --- forward ----------------------------------------------------------------------------
    def standardize(self, numeric: np.ndarray) -> np.ndarray:
        """What :class:`~fraud_core.model.preprocessing.Standardize` gives, float32 ``(n, f)``."""
        x = np.asarray(numeric, dtype=np.float32)
        if self._range is not None:
            x = np.minimum(np.maximum(x, self._range[0]), self._range[1])  # NaN stays NaN
        with np.errstate(invalid="ignore"):  # NaN inputs stay NaN until replaced below
            logged = np.log1p(np.maximum(x, self._zero))
            z = np.minimum(
                np.maximum((np.where(self.log_mask, logged, x) - self.mean) / self.std, self._low),
                self._high,
            )
        if np.isnan(z).any():  # torch: nan_to_num(0.0) then clamp; a NaN input gives 0
            z = np.nan_to_num(z, copy=False)
        return z

    def piecewise(self, numeric: np.ndarray) -> np.ndarray:
        """What :class:`~fraud_core.model.preprocessing.PiecewiseLinear` gives: ``(n, f, bins)``."""
        x = np.asarray(numeric, dtype=np.float32)
        with np.errstate(invalid="ignore"):
            ramp = np.clip((x[:, :, None] - self.piecewise_low) / self.piecewise_width, 0.0, 1.0)
        return np.nan_to_num(ramp, copy=False).astype(np.float32, copy=False)

    def _first_layer(
        self, numeric: np.ndarray, z: np.ndarray, codes: np.ndarray
    ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """Pre-activation of the first layer, each category column's folded rows, and the
        piecewise-linear encoding ``(n, f, bins)`` (``bins`` may be 0)."""
        codes = np.asarray(codes)
        pre = z @ self.numeric_weight + self.first_bias
        ramp = self.piecewise(numeric)
        if ramp.shape[2]:
            pre += ramp.reshape(len(z), -1) @ self.piecewise_weight
        rows = []
        for j, offset in enumerate(self.category_offsets.tolist()):
            rows.append(self.category_table[codes[:, j] + offset])
            pre += rows[-1]
        return pre, rows, ramp

    def _forward(
        self, numeric: np.ndarray, z: np.ndarray, codes: np.ndarray
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Logits (float64) and the post-ReLU activations of every hidden layer."""
        pre, _, _ = self._first_layer(numeric, z, codes)
        acts = [np.maximum(pre, self._zero)]
        for weight, bias in self.hidden:
            acts.append(np.maximum(acts[-1] @ weight + bias, self._zero))
        logits = acts[-1] @ self.output_weight + self.output_bias
        return logits.astype(np.float64), acts

    def logits(self, numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Raw logits (float64, as ``predict_logits`` returns them) for ``(n, f)`` inputs."""
        return self._forward(numeric, self.standardize(numeric), codes)[0]

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated fraud probability, as ``ModelBundle.predict_proba`` computes it."""
        a, b = self.calibration
        return sigmoid(a * logits + b)

    def explain(self, numeric: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits and gradient x input contributions (see the module docstring).

        Returns:
            ``(logits (n,), contributions (n, f + c))``: the numeric features then the category
            columns, in logit units (float32).
        """
        z = self.standardize(numeric)
        pre, rows, ramp = self._first_layer(numeric, z, codes)
        acts = [np.maximum(pre, self._zero)]
        for weight, bias in self.hidden:
            acts.append(np.maximum(acts[-1] @ weight + bias, self._zero))
        logits = (acts[-1] @ self.output_weight + self.output_bias).astype(np.float64)
        # Backward through the ReLU layers: d logit / d (pre-activation of each layer).
        grad = np.where(acts[-1] > 0, self.output_weight, self._zero)
        for (weight, _), act in zip(reversed(self.hidden), reversed(acts[:-1]), strict=True):
            grad = np.where(act > 0, grad @ weight.T, self._zero)
        contributions = np.empty((len(z), z.shape[1] + len(rows)), dtype=np.float32)
        contributions[:, : z.shape[1]] = (grad @ self.numeric_weight.T) * z
        if ramp.shape[2]:  # the encoding's share, summed over each feature's bins
            bins = (grad @ self.piecewise_weight.T).reshape(ramp.shape)
            contributions[:, : z.shape[1]] += (bins * ramp).sum(axis=2)
        for j, folded in enumerate(rows):
            contributions[:, z.shape[1] + j] = np.einsum("ij,ij->i", grad, folded)
        return logits, contributions

    # --- one claim at a time ---------------------------------------------------------------
    # A single claim through numpy is a few dozen calls whose dispatch, not the arithmetic, is
    # the cost, so one claim goes through one compiled kernel instead.
    # Codes go in as a tuple of ints (a list would be reflected by numba, slowly).
    def logit_one(self, numeric: Sequence[float] | np.ndarray, codes: Sequence[int]) -> float:
        """The logit of one claim (same numbers as :meth:`logits`, to float32 rounding)."""
        x = np.asarray(numeric, dtype=np.float64)
        logit, _ = _one_claim(x, tuple(codes), False, *self._kernel_arrays)
        return float(logit)

    def explain_one(
        self, numeric: Sequence[float] | np.ndarray, codes: Sequence[int]
    ) -> tuple[float, np.ndarray]:
        """:meth:`explain` of one claim: ``(logit, contributions (f + c,))``."""
        x = np.asarray(numeric, dtype=np.float64)
        logit, contributions = _one_claim(x, tuple(codes), True, *self._kernel_arrays)
        return float(logit), contributions

    def explain_top(
        self, numeric: Sequence[float] | np.ndarray, codes: Sequence[int], k: int
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """:meth:`explain_one` plus the positions of the ``k`` largest contributions by
        magnitude (ties: the earlier input first, as a stable sort), in one compiled call."""
        x = np.asarray(numeric, dtype=np.float64)
        logit, contributions, ranked = _one_claim_ranked(x, tuple(codes), k, *self._kernel_arrays)
        return float(logit), contributions, ranked

    def probability(self, logit: float) -> float:
        """:meth:`probabilities` of one logit."""
        a, b = self.calibration
        return 0.5 * (1.0 + math.tanh(0.5 * (a * logit + b)))


def _nonzero_spans(weight: np.ndarray) -> np.ndarray:
    """Per row of ``weight``, the columns from its first nonzero to past its last, ``(rows, 2)``
    int64 (``(0, 0)`` for a row of zeros): the run a row's product must visit."""
    nonzero = weight != 0
    any_ = nonzero.any(axis=1)
    first = np.where(any_, nonzero.argmax(axis=1), 0)
    stop = np.where(any_, weight.shape[1] - nonzero[:, ::-1].argmax(axis=1), 0)
    return np.stack([first, stop], axis=1).astype(np.int64)


def _dot_python(  # pragma: no cover - compiled
    u: np.ndarray, v: np.ndarray
) -> np.float32:
    """``u . v`` in float32, summed in whatever order vectorises (``reassoc``): the input
    gradients of the attribution, each a sum over the first layer's units."""
    acc = np.float32(0.0)
    for j in range(u.shape[0]):
        acc += u[j] * v[j]
    return acc


_dot: Callable[..., np.float32] = numba.njit(
    cache=True, nogil=True, fastmath={"reassoc", "nsz", "contract"}
)(_dot_python)


def _one_claim_python(  # pragma: no cover - compiled; tested against the numpy and torch paths
    x: np.ndarray, codes: Any, explain: bool, *arrays: Any
) -> tuple[float, np.ndarray]:
    """Forward pass (and gradient x input) of one claim, float32 like torch: ``x`` its numeric
    inputs, ``codes`` its category codes (a tuple), ``arrays`` the :class:`ForwardArrays`."""
    arr = ForwardArrays(*arrays)
    log_mask, mean, std = arr.log_mask, arr.mean, arr.std
    numeric_weight, first_bias, category_table = (
        arr.numeric_weight,
        arr.first_bias,
        arr.category_table,
    )
    hidden_flat, hidden_flat_t, spans, widths = (
        arr.hidden_flat,
        arr.hidden_flat_t,
        arr.hidden_spans,
        arr.widths,
    )
    output_weight, output_bias = arr.output_weight, arr.output_bias
    piecewise_low, piecewise_width, piecewise_weight, piecewise_cum = (
        arr.piecewise_low,
        arr.piecewise_width,
        arr.piecewise_weight,
        arr.piecewise_cum,
    )
    n_rows = min(len(codes), arr.category_offsets.shape[0])
    rows = np.empty(n_rows, np.int64)
    for c in range(n_rows):
        rows[c] = codes[c] + arr.category_offsets[c]
    f = x.shape[0]
    h1 = numeric_weight.shape[1]
    bins = piecewise_low.shape[1]
    z = np.empty(f, np.float32)
    for i in range(f):
        v = x[i]
        if np.isnan(v):
            z[i] = 0.0
            continue
        if bins > 0:  # held to the training range (PiecewiseLinear.clamp)
            if v < arr.range_low[i]:
                v = arr.range_low[i]
            elif v > arr.range_high[i]:
                v = arr.range_high[i]
        if log_mask[i]:
            v = np.log1p(v) if v > 0.0 else 0.0
        s = (np.float32(v) - mean[i]) / std[i]
        if s > 8.0:
            s = np.float32(8.0)
        elif s < -8.0:
            s = np.float32(-8.0)
        z[i] = s
    # Each unit's sum is accumulated in the same order as a per-unit loop would (bias, the
    # category rows, then input by input), but with the units innermost: contiguous weight
    # rows the compiler vectorises, and the same float32 result.
    acts = np.empty(widths.sum(), np.float32)
    for j in range(h1):
        acts[j] = first_bias[j]
    for r in rows:
        for j in range(h1):
            acts[j] += category_table[r, j]
    for i in range(f):
        zi = z[i]
        for j in range(h1):
            acts[j] += zi * numeric_weight[i, j]
    ramp = np.zeros((f, bins), np.float32)
    full = np.zeros(f, np.int64)  # per feature, how many leading bins the value fills
    for i in range(f):
        if np.isnan(x[i]):
            continue  # a missing value encodes as all zeros
        v = np.float32(x[i])
        # Bins are contiguous and ascending: the value fills a run of leading bins (their
        # weights summed in advance: one row), then a part of the next; the bins above start
        # past the value and add nothing.
        t = 0
        while t < bins and (v - piecewise_low[i, t]) / piecewise_width[i, t] >= 1.0:
            ramp[i, t] = 1.0
            t += 1
        full[i] = t
        if t > 0:
            for j in range(h1):
                acts[j] += piecewise_cum[i, t, j]
        for t in range(full[i], bins):
            e = (v - piecewise_low[i, t]) / piecewise_width[i, t]
            if not e > 0.0:
                break  # this bin starts at or past the value, and so do the ones above
            if e > 1.0:
                e = np.float32(1.0)
            ramp[i, t] = e
            row = i * bins + t
            for j in range(h1):
                acts[j] += e * piecewise_weight[row, j]
    for j in range(h1):
        if not acts[j] > 0.0:
            acts[j] = 0.0
    pos = 0
    w_off = 0
    s_off = 0
    for k in range(1, widths.shape[0]):
        n_in = widths[k - 1]
        n_out = widths[k]
        out = pos + n_in
        for j in range(n_out):
            acts[out + j] = hidden_flat[w_off + n_in * n_out + j]
        for i in range(n_in):
            act = acts[pos + i]
            if act == 0.0:  # an inactive unit adds exact zeros: skip its row
                continue
            row = w_off + i * n_out
            # and of its row, only the outputs its weights reach (an ensemble's blocks)
            for j in range(spans[s_off + 2 * i], spans[s_off + 2 * i + 1]):
                acts[out + j] += act * hidden_flat[row + j]
        for j in range(n_out):
            if not acts[out + j] > 0.0:
                acts[out + j] = 0.0
        pos += n_in
        w_off += n_in * n_out + n_out
        s_off += 2 * (n_in + n_out)
    n_last = widths[widths.shape[0] - 1]
    logit = output_bias
    for j in range(n_last):
        logit += acts[pos + j] * output_weight[j]
    contributions = np.zeros(f + rows.shape[0], np.float32)
    if not explain:
        return float(logit), contributions
    grad = np.empty(n_last, np.float32)
    for j in range(n_last):
        grad[j] = output_weight[j] if acts[pos + j] > 0.0 else np.float32(0.0)
    t_off = hidden_flat_t.shape[0]
    for k in range(widths.shape[0] - 1, 0, -1):
        n_in = widths[k - 1]
        n_out = widths[k]
        pos -= n_in
        t_off -= n_in * n_out
        s_off -= 2 * (n_in + n_out)
        # d/d(input i) = sum over outputs j of W[i, j] * grad[j], accumulated in j order as
        # a per-input loop would, but output by output over contiguous transposed rows
        below = np.zeros(n_in, np.float32)
        back = s_off + 2 * n_in  # this layer's spans per output
        for j in range(n_out):
            g = grad[j]
            if g == 0.0:
                continue
            row = t_off + j * n_in
            for i in range(spans[back + 2 * j], spans[back + 2 * j + 1]):
                below[i] += hidden_flat_t[row + i] * g
        for i in range(n_in):
            if not acts[pos + i] > 0.0:
                below[i] = 0.0
        grad = below
    for i in range(f):
        contributions[i] = _dot(numeric_weight[i], grad) * z[i]
        if full[i] > 0:  # the filled bins (ramp 1), through their summed weights
            contributions[i] += _dot(piecewise_cum[i, full[i]], grad)
        for t in range(full[i], bins):
            if not ramp[i, t] > 0.0:
                break
            contributions[i] += _dot(piecewise_weight[i * bins + t], grad) * ramp[i, t]
    for c in range(rows.shape[0]):
        contributions[f + c] = _dot(category_table[rows[c]], grad)
    return float(logit), contributions


# Compiled on first use (a few seconds; then cached next to this module by numba).
_one_claim: Callable[..., tuple[float, np.ndarray]] = numba.njit(cache=True, nogil=True)(
    _one_claim_python
)


def _one_claim_ranked_python(  # pragma: no cover - compiled; tested against argsort
    x: np.ndarray, codes: Any, k: int, *arrays: Any
) -> tuple[float, np.ndarray, np.ndarray]:
    """:func:`_one_claim` with attribution, and the ``k`` inputs of largest ``|contribution|``
    (a stable insertion sort: ties keep input order, like ``argsort(-abs, stable)``)."""
    logit, contributions = _one_claim(x, codes, True, *arrays)
    n = contributions.shape[0]
    order = np.arange(n)
    size = np.abs(contributions)
    for i in range(1, n):
        j = i
        while j > 0 and size[order[j - 1]] < size[order[j]]:
            order[j - 1], order[j] = order[j], order[j - 1]
            j -= 1
    return logit, contributions, order[: min(k, n)].copy()


# Same file as _one_claim: numba's cache is invalidated when this file changes.
_one_claim_ranked: Callable[..., tuple[float, np.ndarray, np.ndarray]] = numba.njit(
    cache=True, nogil=True
)(_one_claim_ranked_python)
