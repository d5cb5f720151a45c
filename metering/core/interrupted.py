"""A call interrupted by the death of its serving process (pure): its usage and its bill.

Once a request has reached the upstream the provider bills it, so a call whose
``metering serve`` process died while it was in flight still gets exactly one usage
record, of status ``interrupted`` (SPEC §5). Nothing of its answer is known; what the
admission wrote down is (``InFlightCall``, one ``calls_in_flight`` row).

The billing rule (README, Budgets and limits):

    usage   prompt tokens estimated from the prompt's text (~4 characters a token, as a
            cut stream's) + the output bound (``max_tokens`` × max(n, best_of) × prompts,
            the model's max output tokens when ``max_tokens`` is absent; nothing when
            neither is known), ``usage_estimated`` true;
    price   that usage priced with the version in force at ``started_at`` like any record
            (``cost_source = estimated``); a model without a price is ``unpriced``;
    floor   never below what was reserved for the call (the worst case of the dearest
            model it could be served by): the difference is ``adjustment_cost``, so
            ``total = components + adjustment`` still holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from metering.core.billing import Bill, bill_request
from metering.core.pricing import PriceVersion
from metering.core.records import UsageRow, record_row
from metering.core.responses import ResponseFacts, split_model
from metering.core.usage import CHARS_PER_TOKEN, UsageBuckets

INTERRUPTED = "interrupted"  # the status of such a record


class InFlightCall(NamedTuple):
    """What the admission of a request knew, kept until its record is inserted: a
    ``calls_in_flight`` row, in its column order (a tuple: made for every request)."""

    request_id: str
    process_id: int
    key_id: int
    team_id: int | None
    customer_id: int | None
    requested_model: str
    request_type: str
    stream: bool
    started_at: datetime  # naive UTC, the record's started_at
    prompt_tokens: int  # estimated from the prompt's text
    output_tokens: int | None  # the output bound; None: no max_tokens and none known
    reserved_nano: int | None  # reserved in its budgets; None: nothing was reserved
    end_user: str | None = None  # the record's attribution (``core.attribution``)
    end_user_scope: str | None = None
    tags: str | None = None


@dataclass(frozen=True, slots=True)
class LastSeen:
    """The dead process as ``serving_processes`` last had it (None: its row is gone)."""

    host: str | None
    pid: int | None
    heartbeat_at: datetime | None


def interrupted_usage(call: InFlightCall) -> UsageBuckets:
    return UsageBuckets(input_text=call.prompt_tokens, output=call.output_tokens or 0)


def bill_interrupted(
    usage: UsageBuckets, version: PriceVersion | None, *, reserved_nano: int | None
) -> Bill:
    """The estimate priced like any record, never below ``reserved_nano``."""
    bill = bill_request(usage, version, estimated=True)
    if reserved_nano is None or bill.total >= reserved_nano:
        return bill
    return Bill(
        components=bill.components,
        computed_total=bill.computed_total,
        reported_total=None,
        adjustment=reserved_nano - bill.components.total,
        cost_source="estimated",
        price_version_id=bill.price_version_id,
        estimated=True,
    )


def _explain(call: InFlightCall, seen: LastSeen, bill: Bill) -> str:
    process = f"process {call.process_id}"
    if seen.host is not None:
        process += f" (host {seen.host}, pid {seen.pid})"
    if seen.heartbeat_at is not None:
        process += f", last heartbeat {seen.heartbeat_at.isoformat(timespec='seconds')}Z,"
    output = (
        f"{call.output_tokens} output tokens (the request's bound)"
        if call.output_tokens is not None
        else "no output tokens (no max_tokens and no known max output for the model)"
    )
    text = (
        f"interrupted: serving {process} stopped while the call was in flight; usage "
        f"estimated: {call.prompt_tokens} prompt tokens (~{CHARS_PER_TOKEN} characters a "
        f"token) + {output}"
    )
    if bill.adjustment:
        text += "; billed the amount reserved for it (its worst case)"
    elif bill.cost_source == "unpriced":
        text += "; the model has no price"
    return text


def interrupted_record(
    call: InFlightCall, version: PriceVersion | None, *, seen: LastSeen, now: datetime
) -> UsageRow:
    """The usage record of ``call``, priced with ``version``
    (the requested model's, in force at ``started_at``). It ended at the latest when its
    process was last seen alive."""
    usage = interrupted_usage(call)
    bill = bill_interrupted(usage, version, reserved_nano=call.reserved_nano)
    provider, model = split_model(call.requested_model)
    facts = ResponseFacts(
        response_id=None,
        provider=provider,
        model=model,
        usage=usage,
        has_usage=True,
        reported_cost=None,
        cache_hit_type=None,
    )
    ended = seen.heartbeat_at if seen.heartbeat_at is not None else now
    return record_row(
        request_id=call.request_id,
        started_at=call.started_at,
        ended_at=max(ended, call.started_at),
        key_id=call.key_id,
        team_id=call.team_id,
        customer_id=call.customer_id,
        requested_model=call.requested_model,
        request_type=call.request_type,
        stream=call.stream,
        status=INTERRUPTED,
        http_status=None,
        latency_ms=None,
        facts=facts,
        bill=bill,
        error_message=_explain(call, seen, bill),
        end_user=call.end_user,
        end_user_scope=call.end_user_scope,
        tags=call.tags,
    )
