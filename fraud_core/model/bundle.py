"""The model bundle: weights (safetensors) + manifest (JSON) + drift reference, never pickle.

A bundle is everything needed to score a claim the way training did: the network's weights
including its preprocessing buffers, the category vocabulary, the calibration, the decision
threshold, the feature list and the lineage (Metaflow run, training batches). It lives in the
lakehouse under ``models/VERSION/``; ``models/champion.json`` names the champion.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from fraud_core.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from fraud_core.lakehouse import Lakehouse, LakehouseError
from fraud_core.model.calibration import sigmoid
from fraud_core.model.network import FraudNet, NetConfig
from fraud_core.model.preprocessing import Vocabulary
from fraud_core.model.train import encode, predict_logits

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"


class BundleError(ValueError):
    """A bundle is missing, corrupt or incompatible with this code; the message says which."""


@dataclass
class ModelBundle:
    """A trained fraud model ready to score feature rows."""

    net: FraudNet
    vocabulary: Vocabulary
    calibration: tuple[float, float]
    threshold: float
    version: str
    metrics: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    reference_profile: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def logits(self, features: pd.DataFrame) -> np.ndarray:
        numeric, codes = encode(features, self.vocabulary)
        return predict_logits(self.net, numeric, codes)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated fraud probability per feature row."""
        a, b = self.calibration
        return sigmoid(a * self.logits(features) + b)

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """True where a claim should be referred to investigators."""
        return np.asarray(probabilities) >= self.threshold

    # --- persistence ------------------------------------------------------------------------
    def manifest(self, weights_sha256: str) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "created_at": self.created_at,
            "features": {
                "numeric": list(NUMERIC_FEATURES),
                "categorical": list(CATEGORICAL_FEATURES),
            },
            "net": self.net.config.as_dict(),
            "vocabulary": self.vocabulary.to_json(),
            "calibration": {"method": "platt", "a": self.calibration[0], "b": self.calibration[1]},
            "threshold": self.threshold,
            "metrics": self.metrics,
            "lineage": self.lineage,
            "reference_profile": self.reference_profile,
            "weights": {"file": WEIGHTS_FILE, "sha256": weights_sha256},
        }

    def save(self, lakehouse: Lakehouse) -> str:
        """Write weights then manifest (the manifest last: its presence marks a complete bundle)."""
        state = {k: v.contiguous() for k, v in self.net.state_dict().items()}
        weights = save_safetensors(state)
        lakehouse.write_bytes(lakehouse.model_path(self.version, WEIGHTS_FILE), weights)
        manifest = self.manifest(hashlib.sha256(weights).hexdigest())
        lakehouse.write_json(lakehouse.model_path(self.version, MANIFEST_FILE), manifest)
        return lakehouse.url(lakehouse.model_path(self.version))

    @classmethod
    def load(cls, lakehouse: Lakehouse, version: str) -> ModelBundle:
        """Load and verify a bundle: checksum, format and feature compatibility."""
        return cls.from_parts(*cls.read_parts(lakehouse, version))

    @staticmethod
    def read_parts(lakehouse: Lakehouse, version: str) -> tuple[dict[str, Any], bytes]:
        """The manifest and the weights of ``version`` as stored (:meth:`from_parts` verifies
        them)."""
        try:
            manifest = lakehouse.read_json(lakehouse.model_path(version, MANIFEST_FILE))
            weights = lakehouse.read_bytes(lakehouse.model_path(version, WEIGHTS_FILE))
        except (LakehouseError, ValueError) as exc:
            raise BundleError(f"model bundle {version!r} cannot be read: {exc}") from exc
        return manifest, weights

    @classmethod
    def from_parts(cls, manifest: dict[str, Any], weights: bytes) -> ModelBundle:
        version = manifest.get("version", "?")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise BundleError(
                f"bundle {version} has format {manifest.get('format_version')!r}; "
                f"this code reads format {FORMAT_VERSION}"
            )
        expected = manifest.get("weights", {}).get("sha256")
        actual = hashlib.sha256(weights).hexdigest()
        if expected != actual:
            raise BundleError(f"bundle {version}: weights checksum mismatch (corrupt or partial)")
        features = manifest.get("features", {})
        if features.get("numeric") != list(NUMERIC_FEATURES) or features.get("categorical") != list(
            CATEGORICAL_FEATURES
        ):
            raise BundleError(
                f"bundle {version} was trained on other features than this code computes; "
                "retrain it with this version"
            )
        try:
            calibration = manifest["calibration"]
            bundle = cls.from_weights(
                weights,
                net_config=manifest["net"],
                vocabulary=Vocabulary.from_json(manifest["vocabulary"]).values,
                calibration=(float(calibration["a"]), float(calibration["b"])),
                threshold=float(manifest["threshold"]),
                version=version,
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, BundleError):
                raise
            raise BundleError(
                f"bundle {version}: manifest is incomplete or malformed: {exc!r}"
            ) from exc
        bundle.metrics = manifest.get("metrics", {})
        bundle.lineage = manifest.get("lineage", {})
        bundle.reference_profile = manifest.get("reference_profile", {})
        bundle.created_at = manifest.get("created_at", "")
        return bundle

    @classmethod
    def from_weights(
        cls,
        weights: bytes,
        net_config: dict[str, Any],
        vocabulary: dict[str, list[str]],
        calibration: tuple[float, float] = (1.0, 0.0),
        threshold: float = 0.5,
        version: str = "candidate",
    ) -> ModelBundle:
        """A bundle from safetensors bytes and the network's config (no checks beyond shapes)."""
        net = FraudNet(NetConfig(**net_config))
        try:
            net.load_state_dict(load_safetensors(weights), strict=True)
        except (RuntimeError, KeyError) as exc:
            raise BundleError(f"bundle {version}: weights do not fit the network: {exc}") from exc
        net.eval()
        return cls(
            net=net,
            vocabulary=Vocabulary(vocabulary),
            calibration=(float(calibration[0]), float(calibration[1])),
            threshold=float(threshold),
            version=version,
        )


def load_champion(lakehouse: Lakehouse) -> ModelBundle:
    """The current champion's bundle; raises with what to do when there is none."""
    pointer = lakehouse.champion()
    if pointer is None:
        raise BundleError(
            f"no champion model in {lakehouse.url('models')}: materialize fraud_model and "
            "champion_model first (make demo does)"
        )
    return ModelBundle.load(lakehouse, pointer["version"])
