"""A simulated Bifrost upstream for demos and tests, deterministic and on a free
loopback port:

    POST /v1/completions, /v1/chat/completions    completions.py
    POST /v1/responses                            responses.py   (OpenAI Responses API)
    POST /v1/embeddings                           embeddings.py
    POST /anthropic/v1/messages, /v1/messages     anthropic.py   (Anthropic Messages API)
    GET  /v1/models                               models.py

    with Simulator() as sim:            # a thread running an aiohttp server
        ... point METERING_UPSTREAM_URL at sim.url ...
        sim.received                    # what the proxy sent (path, headers, body)

Answers have realistic usage shapes per model (``PROFILES``): cached read/write
tokens, reasoning tokens, citation tokens and search queries, and on some an
upstream-reported ``usage.cost``. A request may steer the simulator with an
extra body field ``"sim": {...}`` (forwarded by the proxy like any unknown field):

    fail_primary: true     the requested provider "fails"; the first fallback serves
    cache: "direct"        served from the gateway cache (extra_fields.cache_debug)
    status: 503            answer with that upstream error status, in the route's shape
    garbage: true          answer 200 with a body that is not JSON
    delay: 2.5             wait that many seconds before answering
    hold: "name"           wait until ``sim.open_gate("name")`` before the last chunk
                           (before answering, when not streamed)
    chunks: 4              content chunks (text deltas) of a stream
    cut_after: 2           close the connection after that many content chunks
    usage: {...} | null    replace the answer's usage (null: no usage, no usage chunk)
    answer: {...}          top-level fields merged into the answer (a strange upstream:
                           its own ``id``, ``model``, ``extra_fields``)
  completions only:
    cut_mid_chunk: 1       send half of that stream chunk's bytes, then close the connection
    stall_after: 1         in a stream, wait ``stall`` seconds before that chunk
  /v1/responses only:
    terminal: "response.incomplete" | "response.failed"   the stream's (and answer's) end
  Anthropic Messages only:
    cache_1h: K            K of the cache-write tokens are 1-hour ones
    delta_usage: "full"    message_delta's usage carries the input and cache counts too
    start_input: K         message_start reports input_tokens K
"""

from metering.simulator.completions import make_usage
from metering.simulator.profiles import PROFILES, REPORTED_RATES, WORDS, Profile
from metering.simulator.server import Simulator

__all__ = ["PROFILES", "REPORTED_RATES", "WORDS", "Profile", "Simulator", "make_usage"]
