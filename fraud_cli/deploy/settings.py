"""The settings of ``pull``, ``deploy`` and ``smoke``, read once from the environment.

Each field is read from the environment variable of the same name in capitals
(``k8s_image`` from ``K8S_IMAGE``); an empty variable counts as unset. A setting that only
one target needs has no default and is asked for with :meth:`DeploySettings.require`, which
names the variable when it is missing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from fraud_cli.deploy import SettingError

Target = Literal["fastapi", "sagemaker", "k8s"]
TARGETS: tuple[Target, ...] = ("fastapi", "sagemaker", "k8s")


class DeploySettings(BaseSettings):
    """Where the model comes from, where it goes, and how long to wait for it."""

    model_config = SettingsConfigDict(
        env_ignore_empty=True, extra="ignore", protected_namespaces=()
    )

    # --- the model ------------------------------------------------------------------------
    lakehouse_uri: str = Field(
        default="", description="The lakehouse the champion is pulled from (any fsspec URI)."
    )
    model_dir: str = Field(default="build/model", description="Where the pulled model goes.")
    model_version: str = Field(default="", description="A version instead of the champion.")
    deploy_target: Target = "fastapi"
    deploy_timeout: float = Field(default=300, gt=0, description="Seconds to wait for a deploy.")
    fraud_env: Literal["local", "prod"] = Field(
        default="local", description="FRAUD_ENV of the deployed API (prod requires API keys)."
    )

    # --- fastapi, and the smoke test of an API ---------------------------------------------
    fraud_service_lakehouse_uri: str = Field(
        default="", description="The lakehouse whose champion pointer the service watches."
    )
    fraud_service_url: str = "http://127.0.0.1:8080"
    fraud_api_key: SecretStr = Field(
        default=SecretStr(""), description="X-API-Key for the smoke test, when the API wants one."
    )
    smoke_timeout: float = Field(default=30, gt=0, description="Seconds to wait in the smoke.")

    # --- sagemaker ------------------------------------------------------------------------
    sagemaker_endpoint: str = "fraud-scoring"
    sagemaker_image_uri: str = ""
    sagemaker_role_arn: str = ""
    sagemaker_artifact_uri: str = Field(
        default="", description="s3:// prefix for model.tar.gz (LAKEHOUSE_URI/deploy/sagemaker)."
    )
    sagemaker_instance_type: str = "ml.m5.large"
    sagemaker_instance_count: int = Field(default=1, ge=1)

    # --- kubernetes -----------------------------------------------------------------------
    k8s_app_name: str = "fraud-scoring"
    k8s_namespace: str = "fraud"
    k8s_image: str = ""
    k8s_replicas: int = 2
    k8s_out_dir: str = "build/k8s"
    k8s_apply: bool = False
    kubectl: str = Field(default="kubectl", description="The kubectl to run (a name or a path).")

    @classmethod
    def from_env(cls, **overrides: Any) -> DeploySettings:
        """The settings from the environment, ``overrides`` (command-line flags) winning.

        Raises:
            SettingError: a value is malformed (the message names its variable).
        """
        try:
            return cls(**overrides)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
            )
            raise SettingError(problems) from None

    def require(self, name: str) -> str:
        """The value of setting ``name``; raises SettingError when it is empty."""
        value = getattr(self, name)
        if not value:
            raise SettingError(f"{name.upper()} is not set")
        return str(value)

    @property
    def service_url(self) -> str:
        return self.fraud_service_url.rstrip("/")

    @property
    def sagemaker_artifacts(self) -> str:
        """Where model.tar.gz goes: ``SAGEMAKER_ARTIFACT_URI``, else under the lakehouse."""
        artifacts = self.sagemaker_artifact_uri or (
            f"{self.require('lakehouse_uri').rstrip('/')}/deploy/sagemaker"
        )
        if not artifacts.startswith("s3://"):
            raise SettingError(f"SAGEMAKER_ARTIFACT_URI must be an s3:// URI, got {artifacts!r}")
        return artifacts
