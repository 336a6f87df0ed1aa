"""The one format of validation errors: each problem with the field it concerns, where, what
and why (``field``, ``loc``, ``type``, ``msg``), never an echo of the input.

A 422's ``detail`` and a refused claim of a batch (``BatchItemError.error``) both use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from fraud_core.schema import PAIR_RULES

# A cross-field rule's error has no location: it names the rule's left field.
PAIR_RULE_FIELDS: dict[str, str] = {r.name: r.left for r in PAIR_RULES}
# Where in a request an error's ``loc`` starts (left out of its ``field``).
REQUEST_PARTS = (["body"], ["query"], ["header"], ["path"])


def error_details(
    errors: Iterable[Mapping[str, Any]], in_request: bool = False
) -> list[dict[str, Any]]:
    """Pydantic errors as ``{"field", "loc", "type", "msg"}`` items.

    Args:
        errors: pydantic's error list (``ValidationError.errors()`` or a
            :class:`RequestValidationError`'s).
        in_request: each ``loc`` starts with the part of the request (``body``, ``query``...),
            which ``field`` leaves out.
    """
    detail = []
    for error in errors:
        loc = [str(p) if not isinstance(p, int) else p for p in error.get("loc", ())]
        path = loc[1:] if in_request and loc[:1] in REQUEST_PARTS else loc
        field = ".".join(str(p) for p in path) or PAIR_RULE_FIELDS.get(error.get("type", ""), "")
        detail.append(
            {"field": field, "loc": loc, "type": error.get("type"), "msg": error.get("msg")}
        )
    return detail


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 listing each problem (the app's handler of :class:`RequestValidationError`)."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(status_code=422, content={"detail": error_details(exc.errors(), True)})
