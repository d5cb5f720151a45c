"""API shapes: one adapter module per API the gateway meters (the seam is
``shapes.base.ApiShape``). Adding a shape (images, audio…) is one module here, one
entry in ``SHAPES`` and its routes in ``gateway.app``, plus its tests.

==============================  ======================  =========================
client route                    shape                   ``request_type`` recorded
==============================  ======================  =========================
``POST /v1/completions``        ``TextCompletions``     ``text_completion``
``POST /v1/chat/completions``   ``ChatCompletions``     ``chat_completion``
``POST /v1/responses``          ``Responses``           ``responses``
``POST /v1/embeddings``         ``Embeddings``          ``embedding``
``POST /anthropic/v1/messages`` ``Messages``            ``messages``
``POST /v1/messages``           ``Messages``            ``messages``
==============================  ======================  =========================
"""

from metering.gateway.shapes.anthropic import Messages
from metering.gateway.shapes.base import ApiShape, ParsedRequest, StreamReader, Verdict
from metering.gateway.shapes.completions import ChatCompletions, TextCompletions
from metering.gateway.shapes.embeddings import Embeddings
from metering.gateway.shapes.responses_api import Responses

SHAPES: dict[str, ApiShape] = {
    shape.request_type: shape
    for shape in (TextCompletions(), ChatCompletions(), Responses(), Embeddings(), Messages())
}

__all__ = ["SHAPES", "ApiShape", "ParsedRequest", "StreamReader", "Verdict"]
