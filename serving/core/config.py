"""Settings of the scoring API, from the environment (prefix ``FRAUD_API_``).

The lakehouse location is shared with the rest of the stack, so it is read from
``LAKEHOUSE_URI`` (``FRAUD_API_LAKEHOUSE_URI`` wins when both are set).
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Hard cap on claims per batch request; the request model is built with it (see api.models).
MAX_BATCH_SIZE = 10_000


class Settings(BaseSettings):
    """Runtime configuration of the scoring API."""

    model_config = SettingsConfigDict(
        env_prefix="FRAUD_API_", validate_by_name=True, validate_by_alias=True, extra="ignore"
    )

    lakehouse_uri: str = Field(
        default="./.lakehouse",
        min_length=1,
        validation_alias=AliasChoices("FRAUD_API_LAKEHOUSE_URI", "LAKEHOUSE_URI"),
        description="Lakehouse root holding models/champion.json and raw/claims (path, s3://, "
        "abfss://).",
    )
    max_batch_size: int = Field(
        default=MAX_BATCH_SIZE,
        ge=1,
        le=MAX_BATCH_SIZE,
        description="Most claims accepted by POST /v1/score/batch.",
    )
    poll_seconds: float = Field(
        default=10.0,
        ge=0.0,
        description="How often the champion pointer is checked for a new model; 0 disables.",
    )
    torch_threads: int = Field(
        default=1,
        ge=0,
        description="torch intra-op threads per worker (1 is fastest for single claims); "
        "0 leaves torch's default.",
    )
