"""What every admin route shares: the request as handlers see it, their reply, the error
of SPEC §4 they raise, domain errors mapped to HTTP in one place, and bodies and query
parameters checked (pydantic models: also the OpenAPI document's schemas)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from sqlalchemy import Connection

from metering.core.days import parse_day
from metering.core.storable import has_control
from metering.errors import Conflict, DatabaseUnavailable, InvalidInput, MeteringError, NotFound
from metering.storage.admin_tokens import TokenInfo

MAX_INT = 2**31 - 1  # what an INTEGER column holds
M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """An admin route's refusal: status and SPEC §4 ``type``; the message says what to do."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


def from_domain(exc: MeteringError) -> ApiError:
    """The one place a domain error becomes an admin API status."""
    if isinstance(exc, InvalidInput):
        return ApiError(400, "invalid_request_error", str(exc))
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, Conflict):
        return ApiError(409, "conflict", str(exc))
    if isinstance(exc, DatabaseUnavailable):
        return ApiError(503, "metering_unavailable", str(exc))
    return ApiError(400, "invalid_request_error", str(exc))


@dataclass(frozen=True, slots=True)
class AdminRequest:
    token: TokenInfo
    path_params: dict[str, str]
    query: dict[str, Any]
    body: bytes

    def json_body(self, model: type[M]) -> M:
        """The body as ``model``; 400 with the first problem otherwise."""
        try:
            return model.model_validate_json(self.body or b"{}")
        except ValidationError as exc:
            raise ApiError(400, "invalid_request_error", _first_problem(exc)) from None


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    if error["type"] == "json_invalid":
        return "the body is not valid JSON: send one JSON object"
    return f"{where or 'body'}: {error['msg']}" if where else str(error["msg"])


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any


@dataclass(frozen=True, slots=True)
class Streamed:
    """A reply whose body is produced in chunks by ``write(conn, sink)`` (a CSV export)."""

    content_type: bytes
    filename: str
    write: Callable[[Connection, Callable[[bytes], int]], None]


# ---- query parameters --------------------------------------------------------------


ParamKind = Literal["string", "integer", "boolean", "date"]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: ParamKind = "string"
    description: str = ""
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None
    enum: tuple[str, ...] = ()

    def schema(self) -> dict[str, Any]:
        if self.kind == "date":
            return {"type": "string", "format": "date"}
        out: dict[str, Any] = {"type": self.kind}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.enum:
            out["enum"] = list(self.enum)
        return out


def parse_query(raw: bytes, params: tuple[Param, ...]) -> dict[str, Any]:
    """The query string checked against ``params``: 400 for an unknown, repeated,
    missing or malformed one."""
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_request_error", "the query string is not UTF-8") from None
    known = {p.name: p for p in params}
    values: dict[str, Any] = {}
    for name, text in pairs:
        param = known.get(name)
        if param is None:
            allowed = ", ".join(known) or "none"
            raise ApiError(
                400, "invalid_request_error", f"unknown query parameter {name!r} (known: {allowed})"
            )
        if name in values:
            raise ApiError(400, "invalid_request_error", f"query parameter {name!r} is repeated")
        values[name] = _convert(param, text)
    for param in params:
        if param.required and param.name not in values:
            raise ApiError(
                400, "invalid_request_error", f"query parameter {param.name!r} is required"
            )
    return values


def _convert(param: Param, text: str) -> Any:
    bad = ApiError(400, "invalid_request_error", f"{param.name}: {text!r} is not a {param.kind}")
    if has_control(text):
        raise ApiError(
            400, "invalid_request_error", f"{param.name} may not contain control characters"
        )
    if param.enum and text not in param.enum:
        raise ApiError(
            400, "invalid_request_error", f"{param.name} must be one of {', '.join(param.enum)}"
        )
    if param.kind == "integer":
        if not text.strip().lstrip("-").isdigit() or len(text) > 12:
            raise bad
        number = int(text)
        low = param.minimum if param.minimum is not None else -MAX_INT
        high = param.maximum if param.maximum is not None else MAX_INT
        if not low <= number <= high:
            raise ApiError(
                400, "invalid_request_error", f"{param.name} must be from {low} to {high}"
            )
        return number
    if param.kind == "boolean":
        if text not in ("true", "false"):
            raise ApiError(400, "invalid_request_error", f"{param.name} must be true or false")
        return text == "true"
    if param.kind == "date":
        return checked_day(text, param.name)
    return text


def checked_day(text: str, what: str) -> date:
    try:
        day = parse_day(text, what=what)
    except InvalidInput as exc:
        raise ApiError(400, "invalid_request_error", str(exc)) from None
    if not 1970 <= day.year <= 9998:  # a window one day past it still exists
        raise ApiError(400, "invalid_request_error", f"{what} must be from 1970 to 9998")
    return day


# ---- bodies --------------------------------------------------------------------------


class Body(BaseModel):
    """A request body: no unknown fields, strict types, no control characters."""

    model_config = ConfigDict(extra="forbid", strict=True)
    free_text: ClassVar[frozenset[str]] = frozenset()  # fields of file contents: lines

    @field_validator("*")
    @classmethod
    def _no_control(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name in cls.free_text:
            return value
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and has_control(item):
                raise ValueError("may not contain control characters (e.g. NUL)")
        return value
