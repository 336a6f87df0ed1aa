"""Target ``fastapi``: the running scoring API swaps to the model without a restart.

The bundle is copied into the lakehouse the service watches (``FRAUD_SERVICE_LAKEHOUSE_URI``),
verified there, and its champion pointer is moved last; then the service's ``/readyz`` is
polled until it reports the new version (``FRAUD_SERVICE_URL``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from fraud_cli.deploy import DeployError
from fraud_cli.deploy.pull import PulledModel
from fraud_cli.deploy.settings import DeploySettings
from fraud_core.lakehouse import Lakehouse
from fraud_core.layout import CHAMPION_POINTER
from fraud_core.model.bundle import ModelBundle
from fraud_core.polling import poll_until


def api_headers(settings: DeploySettings) -> dict[str, str]:
    """The API key header when ``FRAUD_API_KEY`` is set (the value is never printed)."""
    key = settings.fraud_api_key.get_secret_value()
    return {"X-API-Key": key} if key else {}


def wait_until_serving(service_url: str, version: str, timeout: float, poll: float = 0.5) -> None:
    """Poll ``/readyz`` until it reports ``version``.

    Raises:
        DeployError: the service refused the model, or did not report it within ``timeout``.
    """
    last = "no answer"

    def serving() -> bool:
        nonlocal last
        try:
            response = httpx.get(f"{service_url}/readyz", timeout=5)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
            return False
        model = body.get("model_version")
        if response.status_code == 200 and model == version:
            return True
        error = body.get("reload_error") or body.get("detail") or ""
        if version in error and "could not be loaded" in error:
            raise DeployError(f"the service refused model {version}: {error}")
        last = f"HTTP {response.status_code}, serving {model or 'nothing'} {error}".strip()
        return False

    try:
        poll_until(serving, what=f"model {version}", timeout=timeout, interval=poll)
    except TimeoutError:
        raise DeployError(
            f"{service_url}/readyz did not report model {version} within {timeout:g} s "
            f"(last: {last})"
        ) from None


def deploy(model: PulledModel, settings: DeploySettings) -> str:
    """Place the bundle where the service watches its champion pointer, then wait for it."""
    service = Lakehouse(settings.require("fraud_service_lakehouse_uri"))
    for rel, data in model.files().items():
        service.write_bytes(rel, data)
    ModelBundle.load(service, model.version)  # what the service will load is what we verified
    service.set_champion({"version": model.version, "deployed_at": datetime.now(UTC).isoformat()})
    print(f"champion pointer of {service.url(CHAMPION_POINTER)} -> {model.version}")
    wait_until_serving(settings.service_url, model.version, settings.deploy_timeout)
    return f"{settings.service_url} serves model {model.version}"
