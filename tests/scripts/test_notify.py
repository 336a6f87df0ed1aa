"""scripts/notify.py against a local HTTP receiver (the Slack webhook) and a local SMTP server
(aiosmtpd), both on loopback; a failing notifier is reported and never fails the build."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_PATH = "/services/T0000/B0000/s3cr3t-webhook-token"
SMTP_USER, SMTP_PASSWORD = "ci-bot", "smtp-pa55word-not-in-logs"


class Webhook:
    """A Slack-like incoming webhook on loopback recording the JSON bodies it receives."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers["Content-Length"])
                hook.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(hook.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{WEBHOOK_PATH}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """What the local SMTP server received."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    try:
        yield hook
    finally:
        hook.close()


@pytest.fixture
def smtp(free_port: Callable[[], int]) -> Iterator[tuple[Mailbox, int]]:
    """aiosmtpd on loopback with AUTH (LOGIN/PLAIN) for one user; no TLS."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_USER.encode(),
            SMTP_PASSWORD.encode(),
        )
        return AuthResult(success=ok)

    mailbox, port = Mailbox(), free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


def run_notify(
    env: dict[str, str], python: str = sys.executable
) -> subprocess.CompletedProcess[str]:
    """notify.py with only ``env`` (plus PATH): no stray setting from this machine leaks in."""
    import os

    return subprocess.run(
        [python, str(ROOT / "scripts" / "notify.py")],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def jenkins_env(champion_lakehouse: Path) -> dict[str, str]:
    return {
        "NOTIFY_STATUS": "FAILURE",
        "JOB_NAME": "fraud-mlops/main",
        "BUILD_NUMBER": "42",
        "BUILD_URL": "https://jenkins.example/job/fraud-mlops/job/main/42/",
        "BRANCH_NAME": "main",
        "GIT_COMMIT": "0123456789abcdef0123",
        "DEPLOY_TARGET": "sagemaker",
        "FRAUD_ENV": "local",
        "MODEL_DIR": str(champion_lakehouse),  # read only: the champion manifest
    }


@pytest.mark.integration
def test_slack_and_email_carry_the_run_context(
    webhook: Webhook, smtp: tuple[Mailbox, int], champion_lakehouse: Path
) -> None:
    mailbox, port = smtp
    env = {
        **jenkins_env(champion_lakehouse),
        "SLACK_WEBHOOK_URL": webhook.url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_STARTTLS": "false",
        "SMTP_USER": SMTP_USER,
        "SMTP_PASSWORD": SMTP_PASSWORD,
        "NOTIFY_EMAIL_TO": "fraud-team@example.com, oncall@example.com",
        "NOTIFY_EMAIL_FROM": "jenkins@example.com",
    }
    result = run_notify(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "slack: sent" in result.stdout
    assert "email: sent to fraud-team@example.com, oncall@example.com" in result.stdout

    (payload,) = webhook.bodies
    text = json.dumps(payload)
    assert payload["text"].startswith("FAILURE: fraud-mlops/main #42")
    for fact in ("Model: fm-test-1", "average_precision: 0.", "Deploy target: sagemaker"):
        assert fact in text, fact
    assert "<https://jenkins.example/job/fraud-mlops/job/main/42/|open build>" in text

    (message,) = mailbox.messages
    assert message["Subject"] == "[fraud-mlops] FAILURE: fraud-mlops/main #42"
    assert mailbox.recipients == [["fraud-team@example.com", "oncall@example.com"]]
    body = message.get_payload()
    for line in (
        "Status: FAILURE",
        "Build: https://jenkins.example/job/fraud-mlops/job/main/42/",
        "Commit: 0123456789ab",
        "Model: fm-test-1",
        "average_precision: 0.",
    ):
        assert line in body, line
    assert SMTP_PASSWORD not in result.stdout + result.stderr


@pytest.mark.integration
def test_failing_notifiers_are_reported_and_never_fail_the_build(
    webhook: Webhook, free_port: Callable[[], int], champion_lakehouse: Path
) -> None:
    webhook.status = 500
    env = {
        **jenkins_env(champion_lakehouse),
        "SLACK_WEBHOOK_URL": webhook.url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(free_port()),  # nothing listens
        "SMTP_PASSWORD": SMTP_PASSWORD,
        "NOTIFY_EMAIL_TO": "fraud-team@example.com",
    }
    result = run_notify(env)
    assert result.returncode == 0
    assert "WARNING: slack notification failed: RuntimeError: the webhook answered HTTP 500" in (
        result.stdout
    )
    assert "WARNING: email notification failed: ConnectionRefusedError" in result.stdout
    for secret in (WEBHOOK_PATH, SMTP_PASSWORD):
        assert secret not in result.stdout + result.stderr


@pytest.mark.integration
def test_without_settings_or_project_it_still_reports(webhook: Webhook, tmp_path: Path) -> None:
    """Unconfigured channels are skipped; with the base interpreter (the project not
    installed, as after a failed Setup) the message still goes out, model unknown."""
    result = run_notify({"NOTIFY_STATUS": "SUCCESS", "MODEL_DIR": str(tmp_path)})
    assert result.returncode == 0
    assert "slack: skipped (SLACK_WEBHOOK_URL not set)" in result.stdout
    assert "email: skipped (SMTP_HOST or NOTIFY_EMAIL_TO not set)" in result.stdout

    base = getattr(sys, "_base_executable", sys.executable)
    result = run_notify({"NOTIFY_STATUS": "FIXED", "SLACK_WEBHOOK_URL": webhook.url}, python=base)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "slack: sent" in result.stdout
    (payload,) = webhook.bodies
    assert payload["text"].startswith("FIXED: fraud-mlops #local")
    assert "Model: unknown" in json.dumps(payload)
