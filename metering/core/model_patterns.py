"""Model patterns (pure): what a key's ``--models`` and a budget's ``--model`` match.

A pattern is a shell wildcard (``fnmatch``, case-sensitive) matched against
``provider/model``; a pattern without ``/`` is matched against the provider alone (``*``
matches every model; ``check_model_pattern`` refuses a bare name, which would match
nothing). The one matcher for keys (which models a key may call) and for
model-narrowed budgets (admission, settlement, counters, status and forecasts all call
``model_matches``, so they cannot disagree).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from metering.core.storable import has_control
from metering.errors import InvalidInput

MODEL_PATTERN_CHARS = 200


def model_matches(pattern: str, model: str) -> bool:
    """Whether ``pattern`` matches ``model`` (``provider/model``)."""
    if "/" in pattern:
        return fnmatch.fnmatchcase(model, pattern)
    return fnmatch.fnmatchcase(model.partition("/")[0], pattern)


def any_matches(pattern: str, models: Iterable[str]) -> bool:
    return any(model_matches(pattern, m) for m in models)


def check_model_pattern(pattern: str, *, option: str) -> str:
    """A pattern typed at ``option``: one without a provider part (and not starting with
    a wildcard) would match nothing, so it is refused with the fix."""
    if not pattern or has_control(pattern) or len(pattern) > MODEL_PATTERN_CHARS:
        raise InvalidInput(
            f"{option} needs a pattern of 1 to {MODEL_PATTERN_CHARS} printable characters, "
            "e.g. 'openai/gpt-4o*'"
        )
    if "/" not in pattern and not pattern.startswith(("*", "?", "[")):
        raise InvalidInput(
            f"{option} {pattern!r} has no provider and would match no request: write "
            f"provider/model, e.g. 'openai/{pattern}' (or '*/{pattern}' for any provider)"
        )
    return pattern


def budget_covers(model_pattern: str, model: str) -> bool:
    """Whether a budget narrowed to ``model_pattern`` ('' = not narrowed) counts a
    request served by ``model``: THE rule of settlement, counters, status and forecasts
    (admission asks it of every candidate: ``budget_covers_any``)."""
    return not model_pattern or model_matches(model_pattern, model)


def budget_covers_any(model_pattern: str, candidates: Iterable[str]) -> bool:
    """At admission: the request may be served by a model the budget counts."""
    return not model_pattern or any(model_matches(model_pattern, m) for m in candidates)
