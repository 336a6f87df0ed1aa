"""Request dependencies: the scorer serving now, and the settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from fraud_core.scoring import ClaimScorer
from serving.core.config import Settings


def get_scorer(request: Request) -> ClaimScorer:
    """The scorer in ``app.state`` at the time of the request; 503 when no model is loaded.

    The request keeps this object even if a new champion is swapped in while it runs.
    """
    scorer: ClaimScorer | None = getattr(request.app.state, "scorer", None)
    if scorer is None:
        reason = getattr(request.app.state, "model_error", None) or "not loaded yet"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"no model loaded: {reason}")
    return scorer


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


ScorerDep = Annotated[ClaimScorer, Depends(get_scorer)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
