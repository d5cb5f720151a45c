"""A simulated Bifrost upstream for demos and tests (``POST /v1/completions``,
``POST /v1/chat/completions``), deterministic and on a free loopback port.

    with Simulator() as sim:            # a thread running an aiohttp server
        ... point METERING_UPSTREAM_URL at sim.url ...
        sim.received                    # what the proxy sent (path, headers, body)

Answers have realistic usage shapes per model (``PROFILES``): cached read/write
tokens, reasoning tokens, citation tokens and search queries, and on some an
upstream-reported ``usage.cost``. A request may steer the simulator with an
extra body field ``"sim": {...}`` (forwarded by the proxy like any unknown field):

    fail_primary: true     the requested provider "fails"; the first fallback serves
    cache: "direct"        served from the gateway cache (extra_fields.cache_debug)
    status: 503            answer with that upstream error status and a Bifrost error
    garbage: true          answer 200 with a body that is not JSON
    delay: 2.5             wait that many seconds before answering
    hold: "name"           wait until ``sim.open_gate("name")`` before the last chunk
    chunks: 4              content chunks of a stream
    cut_after: 2           close the connection after that many stream chunks
    cut_mid_chunk: 1       send half of that stream chunk's bytes, then close the connection
    stall_after: 1         in a stream, wait ``stall`` seconds before that chunk
    usage: {...} | null    replace the answer's usage (null: no usage, no usage chunk)
    answer: {...}          top-level fields merged into the answer and every stream chunk
                           (a strange upstream: its own ``id``, ``model``, ``extra_fields``)
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

WORDS = ("metered", "tokens", "flow", "through", "the", "gateway", "and", "cost", "adds", "up")


@dataclass(frozen=True)
class Profile:
    cache_read_share: int = 0  # % of the prompt read from the provider's cache
    cache_write: int = 0  # prompt tokens written to the cache
    reasoning: int = 0  # reasoning tokens per choice (inside completion_tokens)
    citation: int = 0
    search_queries: int = 0
    reported_cost: bool = False  # include usage.cost (float USD, as providers do)


PROFILES: dict[str, Profile] = {
    "openai/gpt-4o": Profile(cache_read_share=50),
    "openai/gpt-4o-mini": Profile(),
    "openai/o3-mini": Profile(reasoning=48),
    "anthropic/claude-sonnet-4-5": Profile(cache_read_share=40, cache_write=12, reported_cost=True),
    "perplexity/sonar": Profile(search_queries=1, reported_cost=True),
    "perplexity/sonar-deep-research": Profile(
        reasoning=40, citation=120, search_queries=3, reported_cost=True
    ),
    "gemini/gemini-2.5-pro": Profile(cache_read_share=25),
}
# USD per 1M tokens the simulated providers report in usage.cost (input, output).
REPORTED_RATES = {"anthropic": (3.0, 15.0), "perplexity": (2.0, 8.0)}


def _prompts(body: Mapping[str, Any]) -> list[str]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list):
        return [p for p in prompt if isinstance(p, str)] or [""]
    texts = [m.get("content") for m in body.get("messages") or () if isinstance(m, dict)]
    return ["".join(t for t in texts if isinstance(t, str))]


def make_usage(served: str, body: Mapping[str, Any], choices: int) -> dict[str, Any]:
    """Deterministic usage for a request served by ``served`` (provider/model)."""
    profile = PROFILES.get(served, Profile())
    prompt_tokens = sum(8 + -(-len(p) // 4) for p in _prompts(body)) + profile.cache_write
    max_tokens = body.get("max_tokens")
    per_choice = max_tokens if isinstance(max_tokens, int) and 0 < max_tokens < 16 else 16
    reasoning = profile.reasoning * choices
    completion = per_choice * choices + reasoning
    cache_read = prompt_tokens * profile.cache_read_share // 100
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "prompt_tokens_details": {
            "text_tokens": prompt_tokens - cache_read - profile.cache_write,
            "cached_read_tokens": cache_read,
            "cached_write_tokens": profile.cache_write,
        },
        "completion_tokens": completion,
        "completion_tokens_details": {
            "text_tokens": completion - reasoning,
            "reasoning_tokens": reasoning,
            "citation_tokens": profile.citation,
            "num_search_queries": profile.search_queries,
        },
        "total_tokens": prompt_tokens + completion,
    }
    if profile.reported_cost:
        rate_in, rate_out = REPORTED_RATES.get(served.partition("/")[0], (1.0, 1.0))
        cost_in = round(prompt_tokens * rate_in / 1e6, 9)
        cost_out = round(completion * rate_out / 1e6, 9)
        search = round(profile.search_queries * 0.005, 9)
        usage["cost"] = {
            "input_tokens_cost": cost_in,
            "output_tokens_cost": cost_out,
            "search_queries_cost": search,
            "total_cost": round(cost_in + cost_out + search, 9),
        }
    return usage


def _text(index: int, tokens: int) -> str:
    return " ".join(WORDS[(index + i) % len(WORDS)] for i in range(max(tokens, 1)))


class Simulator:
    """The simulated upstream, served from a background thread (``start``/``stop``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.received: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._gates: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ---- lifecycle -------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self._handle)
        app.router.add_post("/v1/chat/completions", self._handle)
        return app

    def start(self) -> Simulator:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(ready))
            except BaseException as exc:  # reported to start()'s caller
                errors.append(exc)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="metering-simulator", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            raise errors[0]
        return self

    async def _serve(self, ready: threading.Event) -> None:
        self._stopped = asyncio.Event()
        self._runner = web.AppRunner(self.make_app(), handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        ready.set()
        await self._stopped.wait()
        for gate in self._gates.values():
            gate.set()
        await self._runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    def open_gate(self, name: str) -> None:
        """Let requests held by ``"sim": {"hold": name}`` go on (thread-safe)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(lambda: self._gate(name).set())

    # ---- requests --------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        self.received.append({"path": request.path, "headers": dict(request.headers), "body": body})
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return _error(400, "model is required")
        sim_field = body.get("sim")
        sim: dict[str, Any] = sim_field if isinstance(sim_field, dict) else {}
        if sim.get("delay"):
            await asyncio.sleep(float(sim["delay"]))  # not money: seconds
        if sim.get("status"):
            return _error(int(sim["status"]), "simulated provider failure")
        if sim.get("garbage"):
            return web.Response(status=200, body=b"<html>not json", content_type="text/html")
        served = body["model"]
        fallbacks = body.get("fallbacks") or []
        if sim.get("fail_primary"):
            if not fallbacks:
                return _error(503, f"{served} is unavailable and there is no fallback")
            served = fallbacks[0]
        chat = request.path.endswith("/chat/completions")
        if body.get("stream") is True:
            return await self._stream(request, body, sim, served, chat)
        if sim.get("hold"):
            await self._gate(str(sim["hold"])).wait()
        return web.Response(
            body=orjson.dumps(self._response(body, sim, served, chat)),
            content_type="application/json",
        )

    def _response(
        self, body: Mapping[str, Any], sim: Mapping[str, Any], served: str, chat: bool
    ) -> dict[str, Any]:
        n_field = body.get("n")
        n = n_field if isinstance(n_field, int) else 1
        prompts = 1 if chat else len(_prompts(body))
        count = max(n, 1) * prompts
        usage = make_usage(served, body, count)
        per_choice = usage["completion_tokens_details"]["text_tokens"] // count
        provider, _, model = served.partition("/")
        choices = []
        for i in range(count):
            text = _text(i, per_choice)
            choice: dict[str, Any] = {"index": i, "finish_reason": "stop"}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
                choice["logprobs"] = None
            choices.append(choice)
        extra: dict[str, Any] = {
            "request_type": "chat_completion" if chat else "text_completion",
            "provider": provider,
            "model_requested": body["model"].partition("/")[2],
            "latency": 3,
        }
        if sim.get("cache"):
            extra["cache_debug"] = {
                "cache_hit": True,
                "cache_id": f"cache-{next(self._ids)}",
                "hit_type": str(sim["cache"]),
                "provider_used": provider,
                "model_used": model,
                "input_tokens": usage["prompt_tokens"],
            }
        answer: dict[str, Any] = {
            "id": f"cmpl-sim-{next(self._ids)}",
            "object": "chat.completion" if chat else "text_completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": choices,
            "usage": usage,
            "extra_fields": extra,
        }
        if "usage" in sim:  # a faulty upstream: its own (or no) usage
            if sim["usage"] is None:
                del answer["usage"]
            else:
                answer["usage"] = sim["usage"]
        if isinstance(sim.get("answer"), dict):  # a strange upstream: its own id, model…
            answer.update(sim["answer"])
        return answer

    async def _stream(
        self,
        request: web.Request,
        body: Mapping[str, Any],
        sim: Mapping[str, Any],
        served: str,
        chat: bool,
    ) -> web.StreamResponse:
        whole = self._response({**body, "n": 1}, sim, served, chat)
        usage = whole.get("usage")
        content = whole["choices"][0]["message" if chat else "text"]
        text = content["content"] if chat else content
        n_chunks = max(int(sim.get("chunks", 4)), 1)
        words = text.split(" ")
        size = -(-len(words) // n_chunks)
        pieces = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        base = {k: whole[k] for k in ("id", "created", "model")}
        if isinstance(sim.get("answer"), dict):
            base.update(sim["answer"])
        base["object"] = "chat.completion.chunk" if chat else "text_completion"
        for index, piece in enumerate(pieces):
            if sim.get("cut_after") is not None and index >= int(sim["cut_after"]):
                assert request.transport is not None
                request.transport.close()  # a cut stream: no usage, no [DONE]
                return response
            if sim.get("stall_after") is not None and index == int(sim["stall_after"]):
                await asyncio.sleep(float(sim.get("stall", 1)))  # not money: seconds
            if sim.get("hold") and index == len(pieces) - 1:
                await self._gate(str(sim["hold"])).wait()
            last = index == len(pieces) - 1
            delta = {"content": piece} if chat else None
            choice: dict[str, Any] = {"index": 0, "finish_reason": "stop" if last else None}
            choice.update({"delta": delta} if chat else {"text": piece})
            chunk = {
                "extra_fields": {**whole["extra_fields"], "chunk_index": index},
                **base,
                "choices": [choice],
            }
            event = b"data: " + orjson.dumps(chunk) + b"\n\n"
            if sim.get("cut_mid_chunk") is not None and index == int(sim["cut_mid_chunk"]):
                await response.write(event[: len(event) // 2])
                assert request.transport is not None
                request.transport.close()  # the connection breaks inside an event
                return response
            await response.write(event)
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") and usage is not None:
            final = {"extra_fields": whole["extra_fields"], **base, "choices": [], "usage": usage}
            await response.write(b"data: " + orjson.dumps(final) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _error(status: int, message: str) -> web.Response:
    body = {
        "is_bifrost_error": True,
        "status_code": status,
        "error": {"message": message, "type": "provider_error", "code": str(status)},
    }
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
