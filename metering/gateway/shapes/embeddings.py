"""``POST /v1/embeddings``: ``input`` as a string, a list of strings, one token array or a
list of token arrays; ``model``, ``dimensions``, ``encoding_format``. Never a stream.

Usage ``prompt_tokens`` (= ``total_tokens``): input cost only. Worst case: the input's
size (a token array's length is its tokens), no output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from metering.core.budget import RequestShape
from metering.core.usage import estimate_tokens
from metering.gateway.shapes.base import ApiShape, MeteredRequest, ParsedRequest, StreamReader
from metering.gateway.shapes.prompts import body_bytes

MAX_INPUTS = 2048  # OpenAI's own limit on inputs in one request
Text = Annotated[str, Field(min_length=1)]
TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]


class EmbeddingsRequest(MeteredRequest):
    input: Annotated[
        Text | list[Text] | TokenIds | list[TokenIds], Field(min_length=1, max_length=MAX_INPUTS)
    ]
    dimensions: Annotated[int, Field(ge=1)] | None = None
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = None

    def end_user(self) -> str | None:
        return self.user


def _inputs(value: Any) -> list[Any]:
    """The inputs of a request: a string or one token array is one input."""
    if isinstance(value, str) or (isinstance(value, list) and value and isinstance(value[0], int)):
        return [value]
    return value if isinstance(value, list) else []


class Embeddings(ApiShape):
    request_type: ClassVar[str] = "embedding"
    upstream_path: ClassVar[str] = "/v1/embeddings"
    request_model = EmbeddingsRequest
    streams: ClassVar[bool] = False

    def bounds(self, data: Mapping[str, Any]) -> RequestShape:
        inputs = _inputs(data.get("input"))
        return RequestShape(
            prompt_bytes=body_bytes(data.get("input")),
            prompts=max(len(inputs), 1),
            max_tokens=0,
        )

    def output_bound(self, data: Mapping[str, Any], *, max_output_tokens: int | None) -> int | None:
        return 0

    def prompt_tokens(self, data: Mapping[str, Any]) -> int:
        return sum(
            estimate_tokens(item) if isinstance(item, str) else len(item)
            for item in _inputs(data.get("input"))
            if isinstance(item, str | list)
        )

    def reader(self, request: ParsedRequest) -> StreamReader:
        raise AssertionError("embeddings are never streamed")
