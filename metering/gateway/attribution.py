"""A request's attribution at the gateway: the ``x-metering-tags`` header (read once
here, for every API shape; never sent upstream: ``gateway.upstream`` sends only the
headers a shape names), its key's default tags and its shape's end user."""

from __future__ import annotations

from metering.core.attribution import TAGS_HEADER, Attribution, attribute, parse_tags_header
from metering.gateway.responses import Scope
from metering.gateway.shapes import ParsedRequest
from metering.storage.keys import KeyInfo


def tags_header(scope: Scope) -> bytes | None:
    """Every ``x-metering-tags`` header of the request, comma-joined (None: none)."""
    found = [bytes(value) for name, value in scope["headers"] if name == TAGS_HEADER]
    return b",".join(found) if found else None


def request_attribution(scope: Scope, key: KeyInfo, request: ParsedRequest) -> Attribution:
    """InvalidInput (400) for a header that is not acceptable (``core.attribution``)."""
    return attribute(
        key_id=key.id,
        customer_id=key.customer_id,
        key_tags=key.tags,
        header_tags=parse_tags_header(tags_header(scope)),
        end_user=request.end_user,
    )
