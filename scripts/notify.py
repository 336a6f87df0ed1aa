"""Tell people how a build went: a Slack incoming webhook and an e-mail, with the run's context.

It needs only the standard library, so it also reports a build whose set-up failed. The message
carries the status, the job and build number, the build URL, the branch and commit,
the deploy target, and the champion model's version with its held-out metrics, read from the
champion manifest of the pulled model (``MODEL_DIR``) or, failing that, of ``LAKEHOUSE_URI``.

A notifier that fails never fails the build: every channel is tried, each failure is reported
on a ``WARNING:`` line (without the webhook URL or the SMTP password), and the exit code is 0.
A channel without settings is skipped and said so.

Settings (environment; Jenkins sets the job variables itself):

- ``NOTIFY_STATUS`` (or ``--status``): SUCCESS, FAILURE, FIXED, UNSTABLE, ABORTED, ...
- Slack: ``SLACK_WEBHOOK_URL`` (a secret: from Jenkins credentials).
- E-mail: ``SMTP_HOST``, ``SMTP_PORT`` (587), ``SMTP_STARTTLS`` (true on 587), ``SMTP_SSL``
  (true on 465), ``SMTP_USER`` and ``SMTP_PASSWORD`` (secrets, optional),
  ``NOTIFY_EMAIL_TO`` (comma separated), ``NOTIFY_EMAIL_FROM``.
- Context: ``JOB_NAME``, ``BUILD_NUMBER``, ``BUILD_URL``, ``BRANCH_NAME``, ``GIT_COMMIT``,
  ``DEPLOY_TARGET``, ``FRAUD_ENV``, ``MODEL_DIR`` (build/model), ``LAKEHOUSE_URI``.
"""

from __future__ import annotations

import argparse
import json
import os
import smtplib
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

ICONS = {"SUCCESS": ":white_check_mark:", "FIXED": ":tada:", "FAILURE": ":x:"}
METRIC_NAMES = ("average_precision", "roc_auc", "precision_at_k", "recall_at_1pct_fpr")


@dataclass
class RunContext:
    """What the notification says about the build."""

    status: str
    job: str
    build: str
    build_url: str
    branch: str = ""
    commit: str = ""
    target: str = ""
    environment: str = ""
    model_version: str = ""
    model_source: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"{self.status}: {self.job} #{self.build}"

    def lines(self) -> list[str]:
        """The facts, one per line, for the e-mail body and the Slack fallback text."""
        rows = [
            ("Status", self.status),
            ("Job", f"{self.job} #{self.build}"),
            ("Build", self.build_url),
            ("Branch", self.branch),
            ("Commit", self.commit[:12]),
            ("Deploy target", self.target),
            ("FRAUD_ENV", self.environment),
            ("Model", self.model_version or "unknown"),
            ("Model from", self.model_source),
        ]
        rows += [(name, f"{value:.4f}") for name, value in self.metrics.items()]
        return [f"{key}: {value}" for key, value in rows if value]


def champion_summary(locations: list[str]) -> tuple[str, str, dict[str, float]]:
    """(version, where it was read, held-out metrics) of the first readable champion manifest.

    Returns empty values when no location has one; never raises (a notification must go out).
    """
    try:
        from fraud_core.lakehouse import Lakehouse
        from fraud_core.model.bundle import MANIFEST_FILE
    except ImportError as exc:  # the project is not installed (e.g. Setup failed)
        print(f"WARNING: model unknown: fraud_core cannot be imported ({exc})")
        return "", "", {}
    for uri in locations:
        if not uri:
            continue
        try:
            lakehouse = Lakehouse(uri)
            pointer = lakehouse.champion()
            if pointer is None:
                continue
            version = str(pointer["version"])
            manifest = lakehouse.read_json(lakehouse.model_path(version, MANIFEST_FILE))
        except Exception as exc:  # the model is context, not the message: report and go on
            print(f"WARNING: no champion manifest from {uri}: {type(exc).__name__}: {exc}")
            continue
        held_out = manifest.get("metrics", {}).get("test", {}).get("model", {})
        metrics = {
            k: float(held_out[k]) for k in METRIC_NAMES if isinstance(held_out.get(k), int | float)
        }
        return version, uri, metrics
    return "", "", {}


def context_from_env(status: str, env: Mapping[str, str]) -> RunContext:
    """The run context from Jenkins' variables and the champion manifest."""
    version, source, metrics = champion_summary(
        [env.get("MODEL_DIR", "build/model"), env.get("LAKEHOUSE_URI", "")]
    )
    return RunContext(
        status=status.upper(),
        job=env.get("JOB_NAME", "fraud-mlops"),
        build=env.get("BUILD_NUMBER", "local"),
        build_url=env.get("BUILD_URL", ""),
        branch=env.get("BRANCH_NAME") or env.get("GIT_BRANCH", ""),
        commit=env.get("GIT_COMMIT", ""),
        target=env.get("DEPLOY_TARGET", ""),
        environment=env.get("FRAUD_ENV", ""),
        model_version=version,
        model_source=source,
        metrics=metrics,
    )


def slack_payload(ctx: RunContext) -> dict[str, Any]:
    """An incoming-webhook message: fallback text plus blocks."""
    icon = ICONS.get(ctx.status, ":warning:")
    title = f"{icon} *{ctx.title}*"
    if ctx.build_url:
        title += f" (<{ctx.build_url}|open build>)"
    facts = [line for line in ctx.lines() if not line.startswith(("Status:", "Job:", "Build:"))]
    return {
        "text": f"{ctx.title} {ctx.build_url}".strip(),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": title}},
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": line} for line in facts[:10]],
            },
        ],
    }


def send_slack(ctx: RunContext, env: Mapping[str, str]) -> str:
    """POST the message to the webhook; returns what happened."""
    url = env.get("SLACK_WEBHOOK_URL", "")
    if not url:
        return "skipped (SLACK_WEBHOOK_URL not set)"
    request = urllib.request.Request(
        url,
        data=json.dumps(slack_payload(ctx)).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as exc:  # its message would carry the URL: keep the code only
        raise RuntimeError(f"the webhook answered HTTP {exc.code}") from None
    if status >= 300:
        raise RuntimeError(f"the webhook answered HTTP {status}")
    return "sent"


def email_message(ctx: RunContext, sender: str, recipients: list[str]) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"[fraud-mlops] {ctx.title}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message.set_content("\n".join(ctx.lines()) + "\n")
    return message


def send_email(ctx: RunContext, env: Mapping[str, str]) -> str:
    """Send the message through SMTP; returns what happened."""
    host = env.get("SMTP_HOST", "")
    recipients = [r.strip() for r in env.get("NOTIFY_EMAIL_TO", "").split(",") if r.strip()]
    if not host or not recipients:
        return "skipped (SMTP_HOST or NOTIFY_EMAIL_TO not set)"
    port = int(env.get("SMTP_PORT", "587"))
    use_ssl = env.get("SMTP_SSL", str(port == 465)).lower() == "true"
    starttls = env.get("SMTP_STARTTLS", str(port == 587)).lower() == "true"
    sender = env.get("NOTIFY_EMAIL_FROM", "fraud-mlops-ci@localhost")
    context = ssl.create_default_context()
    smtp: smtplib.SMTP = (
        smtplib.SMTP_SSL(host, port, timeout=15, context=context)
        if use_ssl
        else smtplib.SMTP(host, port, timeout=15)
    )
    with smtp:
        if starttls and not use_ssl:
            smtp.starttls(context=context)
        if env.get("SMTP_USER"):
            smtp.login(env["SMTP_USER"], env.get("SMTP_PASSWORD", ""))
        smtp.send_message(email_message(ctx, sender, recipients))
    return f"sent to {', '.join(recipients)}"


def redact(text: str, env: Mapping[str, str]) -> str:
    """``text`` without any secret of the environment in it."""
    for name in ("SLACK_WEBHOOK_URL", "SMTP_PASSWORD"):
        if env.get(name):
            text = text.replace(env[name], "***")
    return text


def notify(status: str, env: Mapping[str, str]) -> dict[str, str]:
    """Send on every channel; returns channel -> outcome. Never raises."""
    try:
        ctx = context_from_env(status, env)
    except Exception as exc:  # still say something, with what we have
        print(f"WARNING: run context incomplete: {redact(repr(exc), env)}")
        ctx = RunContext(status.upper(), env.get("JOB_NAME", "fraud-mlops"), "?", "")
    channels: dict[str, Callable[[RunContext, Mapping[str, str]], str]] = {
        "slack": send_slack,
        "email": send_email,
    }
    outcomes = {}
    for name, send in channels.items():
        try:
            outcomes[name] = send(ctx, env)
            print(f"{name}: {outcomes[name]}")
        except Exception as exc:  # a notifier never fails the build: report it instead
            reason = redact(f"{type(exc).__name__}: {exc}", env)
            outcomes[name] = f"failed: {reason}"
            print(f"WARNING: {name} notification failed: {reason}")
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Slack + e-mail notification of a build.")
    parser.add_argument("--status", default=os.environ.get("NOTIFY_STATUS", "UNKNOWN"))
    args = parser.parse_args(argv)
    notify(args.status, os.environ)
    return 0


if __name__ == "__main__":
    sys.exit(main())
