"""A wheelhouse of the distributions this interpreter has installed, for the image's build.

The project's image installs the same pinned dependencies that `make install` put in .venv.
Downloading them a second time inside the build (about 600 MB from PyPI) is the slowest and
least predictable part of a fresh test run, so the tests build offline instead: every
distribution the image needs is repacked from site-packages into a wheel, the folder is served
on loopback, and the build gets pip's own settings ``PIP_FIND_LINKS`` + ``PIP_NO_INDEX=1``
(which the Dockerfile passes through, for air-gapped builds).

A repacked wheel holds what the installed one put under site-packages (its RECORD), without
bytecode and without the console scripts, which pip writes again from ``entry_points.txt``.
Wheels are kept in a cache folder by file name (name, version and tag), so a later session
repacks only what changed.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import re
import tomllib
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# dist-info files that describe one installation, not the distribution.
_INSTALL_RECORDS = {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json"}


def image_requirements(pyproject: Path) -> list[str]:
    """What the Dockerfile installs: the project's dependencies and its build backend."""
    project = tomllib.loads(pyproject.read_text())
    return [*project["project"]["dependencies"], *project["build-system"]["requires"]]


def closure(requirements: Iterable[str]) -> list[md.Distribution]:
    """The installed distributions that ``requirements`` need, transitively (markers and extras
    evaluated for this interpreter). A requirement that is not installed is an error: the
    offline build would fail on it."""
    found: dict[str, md.Distribution] = {}
    extras_seen: dict[str, set[str]] = {}
    pending = [Requirement(r) for r in requirements]
    while pending:
        req = pending.pop()
        name = canonicalize_name(req.name)
        wanted = set(req.extras)
        if name in found and wanted <= extras_seen[name]:
            continue
        try:
            dist = found.get(name) or md.distribution(req.name)
        except md.PackageNotFoundError:
            raise AssertionError(
                f"{req.name} is needed by the image but not installed here (run `make install`)"
            ) from None
        assert req.specifier.contains(dist.version, prereleases=True), (
            f"{req.name} {dist.version} is installed, the image needs {req}"
        )
        found[name] = dist
        extras_seen[name] = extras_seen.get(name, set()) | wanted
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(
                sub.marker.evaluate({"extra": extra}) for extra in ("", *extras_seen[name])
            ):
                pending.append(sub)
    return sorted(found.values(), key=lambda d: canonicalize_name(d.metadata["Name"]))


def wheel_name(dist: md.Distribution) -> str:
    """``name-version-tags.whl``, the tags of the installed WHEEL file compressed as in a wheel's
    file name (``py2-none-any`` + ``py3-none-any`` = ``py2.py3-none-any``)."""
    wheel = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    assert tags, f"{dist.metadata['Name']} has no WHEEL tags (not installed from a wheel?)"
    parts = zip(*(tag.split("-") for tag in tags), strict=True)
    compressed = "-".join(".".join(dict.fromkeys(values)) for values in parts)
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"]).lower()
    return f"{name}-{dist.version}-{compressed}.whl"


def repack(dist: md.Distribution, folder: Path) -> Path:
    """Write ``dist`` as a wheel into ``folder`` (kept when a wheel of that name exists)."""
    target = folder / wheel_name(dist)
    if target.exists():
        return target
    records: list[str] = []
    partial = target.with_suffix(".partial")
    info_dir = ""
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as wheel:
        for member in dist.files or []:
            path = member.as_posix()
            if path.startswith("../") or "__pycache__/" in path or path.endswith(".pyc"):
                continue  # scripts (pip writes them again) and bytecode
            parts = path.split("/")
            if parts[0].endswith(".dist-info"):
                info_dir = parts[0]
                if len(parts) == 2 and parts[1] in _INSTALL_RECORDS:
                    continue
            source = Path(str(dist.locate_file(member)))
            if not source.is_file():
                continue
            data = source.read_bytes()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            records.append(f"{path},sha256={digest.decode()},{len(data)}")
            info = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (source.stat().st_mode & 0xFFFF) << 16
            wheel.writestr(info, data)
        assert info_dir, f"{dist.metadata['Name']}: no .dist-info among its files"
        records.append(f"{info_dir}/RECORD,,")
        wheel.writestr(f"{info_dir}/RECORD", "\n".join(records) + "\n")
    partial.rename(target)
    return target


def build_wheelhouse(requirements: Iterable[str], folder: Path) -> list[Path]:
    """Repack the closure of ``requirements`` into ``folder`` (in parallel; cached by name)."""
    folder.mkdir(parents=True, exist_ok=True)
    dists = closure(requirements)
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda d: repack(d, folder), dists))
