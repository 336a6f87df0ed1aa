"""GX Data Docs in the lakehouse: one HTML page per validation, under ``quality/data_docs/``.

The site is rendered by GX's own site builder into a temporary local folder, then copied into
the lakehouse with :meth:`fraud_core.lakehouse.Lakehouse.write_bytes`, so the same code serves a
local lakehouse (the default), ``s3://`` and ``abfss://``. Layout under the site root::

    validations/SUITE/RUN_NAME/RUN_TIME/RUN_NAME.html   one page per validation (kept)
    expectations/SUITE.html                             the suite, rewritten on each publish
    index.html                                          the last published suite and validation
    static/                                             styles, fonts, images (copied once)

The index is GX's, built from one publish's results only: it shows the validation published
last (claims, features or scores), not the history. Every validation's own page stays, and its
check's metadata links to it.

Rendering does not depend on the batch size (each expectation shows at most 20 unexpected
values); the static files are copied on the first publish only (bench/gx.py measures a publish).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile

import great_expectations as gx
from great_expectations.core.expectation_validation_result import (
    ExpectationSuiteValidationResult,
)
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)

from expectations.runner import ephemeral_context
from fraud_core.lakehouse import Lakehouse, check_batch_id
from fraud_core.layout import DATA_DOCS

_SITE = "lakehouse"
# Present once the static files are in the site: they are the same for every page.
_STATIC_MARKER = "static/styles/data_docs_default_styles.css"


def _validation_time(report: ExpectationSuiteValidationResult) -> dt.datetime:
    when = report.meta.get("validation_time")
    if isinstance(when, dt.datetime):
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    return dt.datetime.now(dt.UTC)


def publish_validation(
    lh: Lakehouse,
    report: ExpectationSuiteValidationResult,
    suite: gx.ExpectationSuite,
    run_name: str,
) -> str:
    """Render the Data Docs page of one validation into the lakehouse and return its URI.

    Args:
        lh: the lakehouse; the site lives under ``quality/data_docs/`` in it.
        report: the suite's validation result (e.g. ``ClaimsValidation.report``).
        suite: the expectation suite it was validated against (rendered as its own page), not
            yet added to any GX context: GX binds a suite to the one context it is added to.
        run_name: names the validation in the site; the batch id.

    Returns:
        The URI of the validation's page (a local path for a local lakehouse).
    """
    check_batch_id(run_name)  # it becomes folder and file names
    run_id = RunIdentifier(run_name=run_name, run_time=_validation_time(report))
    identifier = ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite.name),
        run_id=run_id,
        batch_identifier=run_name,
    )
    named = ExpectationSuiteValidationResult(
        success=report.success,
        results=report.results,
        suite_name=report.suite_name,
        suite_parameters=report.suite_parameters,
        statistics=report.statistics,
        meta={**report.meta, "run_id": run_id},
        batch_id=report.batch_id,
    )
    with tempfile.TemporaryDirectory(prefix="gx-data-docs-") as site:
        context = ephemeral_context()
        context.add_data_docs_site(
            _SITE,
            {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": site,
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        context.suites.add(suite)
        context.validation_results_store.set(identifier, named)
        # The validation page and the suite's page in one build (GX's site sections each pick
        # their own kind of identifier; its annotation wants one kind per list).
        context.build_data_docs(
            site_names=[_SITE],
            resource_identifiers=[identifier, ExpectationSuiteIdentifier(name=suite.name)],  # type: ignore[arg-type]
        )
        page = _upload(lh, site)
        return lh.url(f"{DATA_DOCS}/{page}")


def _upload(lh: Lakehouse, site: str) -> str:
    """Copy a freshly built site into the lakehouse; return the validation page's path in it."""
    static_present = lh.exists(f"{DATA_DOCS}/{_STATIC_MARKER}")
    files = sorted(
        os.path.relpath(os.path.join(folder, name), site).replace(os.sep, "/")
        for folder, _, names in os.walk(site)
        for name in names
    )
    # The marker goes last, so an interrupted first copy is redone by the next publish.
    files.sort(key=lambda rel: rel == _STATIC_MARKER)
    pages = [rel for rel in files if rel.startswith("validations/")]
    if len(pages) != 1:
        raise RuntimeError(f"GX built {len(pages)} validation pages, expected one: {pages}")
    for rel in files:
        if rel.startswith("static/") and static_present:
            continue
        with open(os.path.join(site, rel), "rb") as fh:
            lh.write_bytes(f"{DATA_DOCS}/{rel}", fh.read())
    return pages[0]
