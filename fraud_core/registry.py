"""The model registry: the champion, who was champion when, and going back one step.

``models/champion.json`` is what scoring follows; ``models/champion_history.json`` lists every
promotion (newest last) so that a rollback knows what to restore. Both are replaced atomically.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import CHAMPION_HISTORY

# The bundle (torch) is imported where a bundle is loaded: the pointers and the history need
# neither, and Dagster's processes load this module whether or not they load a model.
if TYPE_CHECKING:
    from fraud_core.model.bundle import ModelBundle


def champion_bundle(lh: Lakehouse) -> ModelBundle | None:
    """The champion's bundle, or None before the first promotion (the pointer is read once)."""
    from fraud_core.model.bundle import ModelBundle

    pointer = lh.champion()
    return None if pointer is None else ModelBundle.load(lh, pointer["version"])


def history(lh: Lakehouse) -> list[dict[str, Any]]:
    return list(lh.read_json(CHAMPION_HISTORY)) if lh.exists(CHAMPION_HISTORY) else []


def promote(lh: Lakehouse, pointer: dict[str, Any]) -> dict[str, Any]:
    """Make ``pointer['version']`` the champion and record it in the history."""
    current = lh.champion()
    entry = {
        **pointer,
        "promoted_at": datetime.now(UTC).isoformat(),
        "previous_version": current["version"] if current else None,
    }
    lh.write_json(CHAMPION_HISTORY, [*history(lh), entry])
    lh.set_champion(entry)
    return entry


def rollback(lh: Lakehouse) -> dict[str, Any]:
    """Restore the champion before the current one (its bundle must still load)."""
    past = history(lh)
    current = lh.champion()
    if current is None or len(past) < 2:
        raise ValueError("nothing to roll back to: fewer than two promotions in the history")
    previous = past[-2]
    from fraud_core.model.bundle import BundleError, ModelBundle

    try:
        ModelBundle.load(lh, previous["version"])
    except BundleError as exc:
        raise ValueError(f"cannot roll back to {previous['version']}: {exc}") from exc
    restored = {
        **previous,
        "restored_at": datetime.now(UTC).isoformat(),
        "rolled_back_from": current["version"],
    }
    lh.write_json(CHAMPION_HISTORY, past[:-1])
    lh.set_champion(restored)
    return restored
