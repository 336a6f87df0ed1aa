"""The Jenkinsfile: linted by npm-groovy-lint, and its declarative structure checked here.

npm-groovy-lint (CodeNarc) checks Groovy, not declarative-pipeline rules, so this module also
reads the pipeline: the stages in order, each calling make targets that exist, the JUnit
report, the post notifications and the archived artifacts, and how credentials are used.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fraud_cli.servers import node_tool

ROOT = Path(__file__).resolve().parents[2]
JENKINSFILE = ROOT / "Jenkinsfile"
MAKEFILE = ROOT / "Makefile"

STAGES_IN_ORDER = [
    "Setup",
    "Lint",
    "Test",
    "Deploy training",
    "Materialize",
    "Pull model",
    "Deploy",
    "Smoke test",
]
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|WEBHOOK|CREDENTIAL)", re.I)


# --- a small reader for the Jenkinsfile -------------------------------------------------------


def strip_comments(text: str) -> str:
    """Groovy source without // and /* */ comments (string literals kept intact)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def block(text: str, start: int) -> str:
    """The text between the first ``{`` at or after ``start`` and its matching ``}``."""
    open_at = text.index("{", start)
    depth, i = 0, open_at
    quote = ""
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
        i += 1
    raise ValueError(f"unbalanced braces after offset {start}")


def named_block(text: str, name: str) -> str:
    """The body of the first ``name {`` block (``name`` a word such as post or options)."""
    match = re.search(rf"(?<![\w.]){re.escape(name)}\s*\{{", text)
    assert match, f"no `{name} {{ ... }}` block"
    return block(text, match.start())


def stages(text: str) -> dict[str, str]:
    """Stage name -> body, in document order (nested stages included)."""
    return {m.group(1): block(text, m.end()) for m in re.finditer(r"stage\('([^']+)'\)", text)}


def sh_commands(text: str) -> list[str]:
    """The command of every ``sh`` step."""
    assert not re.search(r"\bsh\s*\(", text), "write sh steps as sh 'make TARGET'"
    assert not re.search(r'\bsh\s+"', text), "no interpolated (double-quoted) sh commands"
    return re.findall(r"\bsh\s+'([^']*)'", text)


def make_targets(makefile: str) -> set[str]:
    """Targets of the Makefile that are rules and declared .PHONY."""
    rules = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.M))
    phony_text = re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", makefile, re.M)
    assert phony_text, "the Makefile has no .PHONY line"
    phony = set(phony_text.group(1).replace("\\\n", " ").split())
    return rules & phony


def structure_problems(jenkinsfile: str, makefile: str) -> list[str]:
    """Everything wrong with the pipeline's structure (empty when it is right)."""
    text = strip_comments(jenkinsfile)
    problems: list[str] = []
    found = stages(text)
    order = [name for name in found if name in STAGES_IN_ORDER]
    if order != STAGES_IN_ORDER:
        problems.append(f"stages {order}, expected {STAGES_IN_ORDER}")
    targets = make_targets(makefile)
    for name, body in found.items():
        if "stages" in re.findall(r"\b(stages)\s*\{", body):
            continue  # a parent stage: its children are checked
        commands = sh_commands(body)
        if not commands:
            problems.append(f"stage {name!r} calls no make target")
        for command in commands:
            match = re.fullmatch(r"make ([a-z][a-z0-9-]*)", command)
            if not match:
                problems.append(f"stage {name!r}: {command!r} is not `make TARGET`")
            elif match.group(1) not in targets:
                problems.append(f"stage {name!r}: make target {match.group(1)!r} not in Makefile")
    for command in sh_commands(text):  # also outside stages (the notification helper)
        match = re.fullmatch(r"make ([a-z][a-z0-9-]*)", command)
        if not match or match.group(1) not in targets:
            problems.append(f"sh {command!r} does not call an existing make target")
    return problems


# --- npm-groovy-lint --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def groovy_lint() -> Path:
    """node_modules/.bin/npm-groovy-lint, installed from package-lock.json when missing."""
    try:
        linter = Path(node_tool("npm-groovy-lint"))
    except RuntimeError as exc:
        pytest.fail(f"the Jenkinsfile lint needs npm-groovy-lint: {exc}")
    if shutil.which("java") is None:
        pytest.fail("java is not installed: npm-groovy-lint runs CodeNarc on Java >= 17")
    return linter


@pytest.mark.slow  # a JVM (CodeNarc): ~15 s, plus `npm ci` on a fresh clone
def test_npm_groovy_lint_passes(groovy_lint: Path) -> None:
    """No error and no warning (extends recommended-jenkinsfile; --noserver: no JVM left)."""
    assert '"recommended-jenkinsfile"' in (ROOT / ".groovylintrc.json").read_text()
    result = subprocess.run(
        [str(groovy_lint), "--noserver", "--failon", "warning", "Jenkinsfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 error" in result.stdout or "Error'   │ 0" in result.stdout, result.stdout[-2000:]


# --- declarative structure --------------------------------------------------------------------


def test_stages_in_order_each_calling_existing_make_targets() -> None:
    assert structure_problems(JENKINSFILE.read_text(), MAKEFILE.read_text()) == []


def test_the_structure_check_catches_mistakes() -> None:
    """The checks above bite: a renamed target, a shell command, a missing stage."""
    good, makefile = JENKINSFILE.read_text(), MAKEFILE.read_text()
    cases = {
        "make target 'deploy-everything' not in Makefile": good.replace(
            "sh 'make deploy'", "sh 'make deploy-everything'"
        ),
        "is not `make TARGET`": good.replace("sh 'make smoke'", "sh 'curl localhost:8080'"),
        "expected": good.replace("stage('Pull model')", "stage('Download')"),
    }
    for expected, broken in cases.items():
        problems = structure_problems(broken, makefile)
        assert any(expected in p for p in problems), (expected, problems)


def test_trigger_options_and_parameters() -> None:
    text = strip_comments(JENKINSFILE.read_text())
    assert "githubPush()" in named_block(text, "triggers")
    options = named_block(text, "options")
    for option in ("timestamps()", "timeout(", "buildDiscarder(", "disableConcurrentBuilds()"):
        assert option in options, option
    params = named_block(text, "parameters")
    choices = {
        name: re.findall(r"'([^']+)'", values)
        for name, values in re.findall(r"choice\(name: '(\w+)', choices: \[([^\]]*)\]", params)
    }
    assert choices["DEPLOY_TARGET"] == ["fastapi", "sagemaker", "k8s"]
    assert choices["RUN_TRAINING"] == ["local", "step-functions"]
    assert "FRAUD_ENV" in choices
    assert re.search(r"string\(name: 'MATERIALIZE_SELECTION'", params)
    training = stages(text)["Deploy training"]
    assert re.search(
        r"when\s*\{\s*expression\s*\{\s*params.RUN_TRAINING == 'step-functions'", training
    )


def test_junit_report_is_published_from_what_make_test_writes() -> None:
    text = strip_comments(JENKINSFILE.read_text())
    test_stage = stages(text)["Test"]
    assert re.search(
        r"junit\b[^\n]*testResults: 'reports/junit.xml'", named_block(test_stage, "always")
    )
    make_test = re.search(r"^test:.*\n((?:\t.*\n)+)", MAKEFILE.read_text(), re.M)
    assert make_test and "--junitxml=reports/junit.xml" in make_test.group(1)


def test_post_notifies_and_archives() -> None:
    text = strip_comments(JENKINSFILE.read_text())
    pipeline = block(text, text.index("pipeline"))
    post = named_block(pipeline[pipeline.rindex("post {") :], "post")
    for condition, status in (("failure", "FAILURE"), ("fixed", "FIXED"), ("success", "SUCCESS")):
        assert f"notifyTeam('{status}')" in named_block(post, condition), condition
    assert "params.NOTIFY_ON_SUCCESS" in named_block(post, "success")  # configurable
    helper = named_block(text, "void notifyTeam(String status)")
    assert sh_commands(helper) == ["make notify"]
    assert "SLACK_WEBHOOK_URL" in helper and "SMTP_PASSWORD" in helper
    archived = named_block(post, "always")
    for pattern in ("manifest.json", "reports/**", "bench/results/**"):
        assert pattern in archived, pattern


def test_credentials_only_through_withcredentials_or_credentials() -> None:
    text = strip_comments(JENKINSFILE.read_text())
    secrets = set(re.findall(r"(?:variable|usernameVariable|passwordVariable): '(\w+)'", text))
    env_assignments = re.findall(r"^\s*(\w+)\s*=\s*(.+)$", text, re.M)
    from_credentials = {name for name, value in env_assignments if "credentials(" in value}
    secrets |= from_credentials
    assert {"SLACK_WEBHOOK_URL", "SMTP_PASSWORD", "AWS_SECRET_ACCESS_KEY"} <= secrets
    for name, value in env_assignments:
        if SECRET_NAME.search(name) and name not in from_credentials:
            pytest.fail(f"{name} looks secret but is not bound by credentials(): {value}")
    for call in re.finditer(r"credentials\(", text):
        assert re.search(r"environment\s*\{[^{}]*$", text[: call.start()]), (
            "credentials() outside an environment block"
        )
    # Never interpolated by Groovy (that leaks into the build log and process list), never echoed.
    for literal in re.findall(r'"([^"]*)"', text):
        for name in secrets:
            assert name not in literal, f"secret {name} inside a Groovy-interpolated string"
    for echoed in re.findall(r"\becho\b[^\n]*", text):
        assert not any(name in echoed for name in secrets), echoed
    assert "set -x" not in text
    for leaked in (r"AKIA[0-9A-Z]{16}", r"hooks\.slack\.com", r"xox[abp]-", r"password\s*[:=]\s*'"):
        assert not re.search(leaked, text, re.I), leaked


def test_run_settings_reach_the_delivery_stages_only() -> None:
    """FRAUD_ENV=prod or FRAUD_TRAINING=step-functions must not leak into `make test`."""
    text = strip_comments(JENKINSFILE.read_text())
    pipeline = block(text, text.index("pipeline"))
    top_level = named_block(pipeline[: pipeline.index("stages {")], "environment")
    deliver = named_block(stages(text)["Deliver"], "environment")
    for name in ("FRAUD_ENV", "FRAUD_TRAINING", "MATERIALIZE_SELECTION", "AWS_ACCESS_KEY_ID"):
        assert name not in top_level and name in deliver, name


def test_materialize_gets_the_dagster_token_only_through_withcredentials() -> None:
    """The Materialize stage runs inside withDagsterToken, which binds DAGSTER_API_TOKEN (what
    fraud_cli.materialize.remote sends) from the credential DAGSTER_TOKEN_CREDENTIALS_ID names, and
    runs the stage without it when that is unset."""
    text = strip_comments(JENKINSFILE.read_text())
    materialize = stages(text)["Materialize"]
    assert re.search(r"withDagsterToken\s*\{\s*sh 'make materialize'\s*\}", materialize)
    helper = named_block(text, "void withDagsterToken(Closure body)")
    bound = named_block(helper, "if (env.DAGSTER_TOKEN_CREDENTIALS_ID)")
    assert re.search(
        r"withCredentials\(\[string\(credentialsId: env.DAGSTER_TOKEN_CREDENTIALS_ID, "
        r"variable: 'DAGSTER_API_TOKEN'\)\]\)\s*\{\s*body\(\)",
        bound,
    )
    assert "body()" in named_block(helper, "else")
    script = (ROOT / "fraud_cli" / "materialize" / "remote.py").read_text()
    assert 'os.environ.get("DAGSTER_API_TOKEN"' in script
