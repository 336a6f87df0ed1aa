"""Settings of the scoring API, from the environment (prefix ``FRAUD_API_``).

The lakehouse location and the environment name are shared with the rest of the stack, so they
are read from ``LAKEHOUSE_URI`` and ``FRAUD_ENV`` (``FRAUD_API_LAKEHOUSE_URI`` and
``FRAUD_API_ENV`` win when both are set).

Authentication is never implicit. The service accepts the API keys in ``FRAUD_API_KEYS``
(comma-separated: during a rotation both the new and the old key are listed, then the old one
is dropped). Running without keys needs ``FRAUD_API_AUTH_DISABLED=true``, which is for a local
demo only (``make serve`` sets it when no keys are configured): with ``FRAUD_ENV=prod`` the
settings refuse it, and they refuse to start without keys. Placeholder and short keys are
refused everywhere.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fraud_core.features import FEATURES
from fraud_core.layout import DEFAULT_LAKEHOUSE_DIR
from fraud_core.schema import DEFAULT_CLAIM_DATE_MAX_SKEW_DAYS

# Hard cap on claims per batch request; the request model is built with it (see api.models).
MAX_BATCH_SIZE = 10_000
# A claim's contributions are one per model feature: no more can be ranked.
MAX_TOP_FEATURES = len(FEATURES)
MIN_KEY_LENGTH = 16
# Values people leave in templates; a key that contains one of these is refused.
_PLACEHOLDERS = ("changethis", "changeme", "change-me", "placeholder", "example", "your-key")


class Settings(BaseSettings):
    """Runtime configuration of the scoring API."""

    model_config = SettingsConfigDict(
        env_prefix="FRAUD_API_", validate_by_name=True, validate_by_alias=True, extra="ignore"
    )

    env: Literal["local", "prod"] = Field(
        default="local",
        validation_alias=AliasChoices("FRAUD_API_ENV", "FRAUD_ENV"),
        description="local (the default) or prod: prod refuses to start without API keys.",
    )
    lakehouse_uri: str = Field(
        default=DEFAULT_LAKEHOUSE_DIR,
        min_length=1,
        validation_alias=AliasChoices("FRAUD_API_LAKEHOUSE_URI", "LAKEHOUSE_URI"),
        description="Lakehouse root holding models/champion.json and raw/claims (path, s3://, "
        "abfss://).",
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("FRAUD_API_KEYS"),
        description="Accepted X-API-Key values, comma-separated (list the new and the old key "
        f"while rotating). Each at least {MIN_KEY_LENGTH} characters.",
    )
    auth_disabled: bool = Field(
        default=False,
        description="Serve /v1 without API keys: local demo only (refused with FRAUD_ENV=prod).",
    )
    metrics_require_key: bool = Field(
        default=False,
        description="Also require an API key for /metrics (by default it is open like the "
        "probes: aggregates only, no claim data).",
    )
    max_batch_size: int = Field(
        default=MAX_BATCH_SIZE,
        ge=1,
        le=MAX_BATCH_SIZE,
        description="Most claims accepted by POST /v1/score/batch.",
    )
    max_body_bytes: int = Field(
        default=16_384,
        ge=1_024,
        description="Largest request body of every route except the batch route (413 above).",
    )
    max_batch_body_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1_024,
        description="Largest request body of POST /v1/score/batch (413 above).",
    )
    poll_seconds: float = Field(
        default=10.0,
        ge=0.0,
        description="How often the champion pointer is checked for a new model; 0 disables.",
    )
    reload_history: bool = Field(
        default=True,
        description="Also follow raw (checked at each poll): new raw batches are added to the "
        "claims history, a replaced batch reloads it, so history features include them.",
    )
    torch_threads: int = Field(
        default=1,
        ge=0,
        description="torch and BLAS threads per worker (1 is fastest for single claims); "
        "0 leaves the libraries' defaults.",
    )
    claim_date_max_skew_days: int = Field(
        default=DEFAULT_CLAIM_DATE_MAX_SKEW_DAYS,
        ge=0,
        validation_alias=AliasChoices(
            "FRAUD_API_CLAIM_DATE_MAX_SKEW_DAYS", "CLAIM_DATE_MAX_SKEW_DAYS"
        ),
        description="Days past today a claim may be dated (clock skew between systems); a "
        "later date, or one before 1900, is refused with 422 (type date_window).",
    )
    top_features: int = Field(
        default=3,
        ge=0,
        le=MAX_TOP_FEATURES,
        description="Contributing features returned per claim by default.",
    )
    sagemaker: bool = Field(
        default=False,
        description="Serving behind SageMaker: POST /invocations takes no API key (SageMaker "
        "authenticates InvokeEndpoint callers with IAM and forwards no X-API-Key), and the "
        "service may start without FRAUD_API_KEYS (the /v1 routes then accept no key at all).",
    )
    bench_echo: bool = Field(
        default=False,
        description="Expose POST /v1/echo: parses a claim like /v1/score and answers a constant "
        "(the framework's ceiling, for bench/serve.py). Not in the OpenAPI document.",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        """``"k1,k2"`` (the environment's form) to a list; blanks around commas dropped."""
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("api_keys")
    @classmethod
    def _no_placeholder_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for i, key in enumerate(keys):
            secret = key.get_secret_value()
            if len(secret) < MIN_KEY_LENGTH:
                raise ValueError(
                    f"API key #{i + 1} has {len(secret)} characters; use at least "
                    f"{MIN_KEY_LENGTH} random ones (e.g. python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))')"
                )
            if any(p in secret.lower() for p in _PLACEHOLDERS):
                raise ValueError(f"API key #{i + 1} is a placeholder: set a real secret")
        return keys

    @model_validator(mode="after")
    def _auth_is_explicit(self) -> Settings:
        if self.auth_disabled and self.env == "prod":
            raise ValueError(
                "FRAUD_API_AUTH_DISABLED=true is for a local demo only; refused with "
                "FRAUD_ENV=prod: set FRAUD_API_KEYS instead"
            )
        if self.auth_disabled and self.api_keys:
            raise ValueError(
                "both FRAUD_API_KEYS and FRAUD_API_AUTH_DISABLED=true are set: choose one"
            )
        if not self.auth_disabled and not self.api_keys and not self.sagemaker:
            hint = (
                "FRAUD_ENV=prod refuses to start without them"
                if self.env == "prod"
                else "or, for a local demo only, set FRAUD_API_AUTH_DISABLED=true"
            )
            raise ValueError(f"no API keys: set FRAUD_API_KEYS (comma-separated); {hint}")
        return self
