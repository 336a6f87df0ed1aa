"""The champion (or a given version) copied from a lakehouse into a local one-model lakehouse,
verified by :class:`~fraud_core.model.bundle.ModelBundle` before anything is written."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import CHAMPION_POINTER
from fraud_core.model.bundle import MANIFEST_FILE, WEIGHTS_FILE, BundleError, ModelBundle


@dataclass(frozen=True)
class PulledModel:
    """A verified bundle in a local one-model lakehouse."""

    version: str
    manifest: dict[str, Any]
    weights: bytes
    lakehouse: Lakehouse

    @property
    def sha256(self) -> str:
        return str(self.manifest["weights"]["sha256"])

    def files(self) -> dict[str, bytes]:
        """Lakehouse-relative path -> bytes, weights before manifest (the manifest marks a
        complete bundle)."""
        lh = self.lakehouse
        manifest = lh.model_path(self.version, MANIFEST_FILE)
        return {
            lh.model_path(self.version, WEIGHTS_FILE): self.weights,
            manifest: lh.read_bytes(manifest),
        }


def verified_parts(lakehouse: Lakehouse, version: str) -> tuple[dict[str, Any], bytes]:
    """Manifest and weights of ``version``, as ModelBundle verifies them (checksum, format,
    features).

    Raises:
        BundleError: the bundle is missing, corrupt or incompatible with this code.
    """
    manifest, weights = ModelBundle.read_parts(lakehouse, version)
    ModelBundle.from_parts(manifest, weights)
    return manifest, weights


def pull(source_uri: str, model_dir: str, version: str = "") -> PulledModel:
    """Download the champion (or ``version``) from ``source_uri`` into ``model_dir``, verified."""
    source = Lakehouse(source_uri)
    pointer = {"version": version} if version else source.champion()
    if pointer is None:
        raise BundleError(f"no champion model in {source.url('models')}: promote one first")
    version = str(pointer["version"])
    manifest, weights = verified_parts(source, version)
    target = Lakehouse(model_dir)
    target.delete("models")  # MODEL_DIR holds exactly one model
    target.write_bytes(target.model_path(version, WEIGHTS_FILE), weights)
    target.write_json(target.model_path(version, MANIFEST_FILE), manifest)
    target.set_champion(
        {
            **pointer,
            "source": source.url(source.model_path(version)),
            "pulled_at": datetime.now(UTC).isoformat(),
        }
    )
    return PulledModel(version, manifest, weights, target)


def load_pulled(model_dir: str) -> PulledModel | None:
    """The model pulled into ``model_dir`` (verified again), or None when there is none."""
    if not os.path.exists(os.path.join(model_dir, CHAMPION_POINTER)):
        return None
    lakehouse = Lakehouse(model_dir)
    pointer = lakehouse.champion()
    if pointer is None:
        return None
    version = str(pointer["version"])
    manifest, weights = verified_parts(lakehouse, version)
    return PulledModel(version, manifest, weights, lakehouse)
