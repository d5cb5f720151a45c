"""The upstream gateway client: one shared ``aiohttp.ClientSession`` behind a small interface.

``UpstreamClient.post(path, body)`` (and ``get(path)``) is an async context manager
yielding an ``UpstreamResponse`` (status, content type, ``read()`` or ``chunks()``). Failures
become two exceptions: ``UpstreamTimeout`` (→ 504) and ``UpstreamError``
(connection refused/reset, unreadable body → 502). The client's virtual key is
never forwarded: the only credential sent is ``METERING_UPSTREAM_API_KEY``; the only
client headers sent are those an API shape names (e.g. ``anthropic-version``). The usage
record's id goes along as ``x-metering-request-id``, so the upstream's logs (and an
interrupted call's record) can be matched with ours.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import aiohttp

from metering.errors import UpstreamError, UpstreamTimeout

REQUEST_ID_HEADER = "x-metering-request-id"


class UpstreamResponse(Protocol):
    status: int
    content_type: str

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...


class UpstreamClient(Protocol):
    def post(
        self,
        path: str,
        body: bytes,
        *,
        stream: bool,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AbstractAsyncContextManager[UpstreamResponse]: ...

    def get(self, path: str) -> AbstractAsyncContextManager[UpstreamResponse]: ...

    async def close(self) -> None: ...


class _AiohttpResponse:
    def __init__(self, response: aiohttp.ClientResponse, timeout: float) -> None:
        self._response = response
        self._timeout = timeout
        self.status = response.status
        self.content_type = response.headers.get("content-type", "application/json")

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(f"upstream did not answer within {self._timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream response could not be read: {exc}") from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(
                f"upstream sent nothing for {self._timeout:g}s in the middle of a stream"
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream stream broke: {exc}") from exc


class AiohttpUpstream:
    """The production client. The session is made lazily, inside the running loop."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
        max_connections: int = 1000,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._client_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=min(connect_timeout, timeout), sock_read=timeout
        )
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                timeout=self._client_timeout,
                headers=self._headers,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    @asynccontextmanager
    async def post(
        self,
        path: str,
        body: bytes,
        *,
        stream: bool,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[UpstreamResponse]:
        # A whole (non-streamed) answer must arrive within the timeout; a stream
        # may run longer as long as it keeps sending (sock_read).
        timeout = (
            self._client_timeout
            if stream
            else aiohttp.ClientTimeout(
                total=self._timeout, sock_connect=self._client_timeout.sock_connect
            )
        )
        sent = dict(headers or {})
        if request_id is not None:
            sent[REQUEST_ID_HEADER] = request_id
        response = await self._send("POST", path, body, timeout, sent)
        try:
            yield _AiohttpResponse(response, self._timeout)
        finally:
            response.release()

    @asynccontextmanager
    async def get(self, path: str) -> AsyncIterator[UpstreamResponse]:
        timeout = aiohttp.ClientTimeout(
            total=self._timeout, sock_connect=self._client_timeout.sock_connect
        )
        response = await self._send("GET", path, None, timeout, {})
        try:
            yield _AiohttpResponse(response, self._timeout)
        finally:
            response.release()

    async def _send(
        self,
        method: str,
        path: str,
        body: bytes | None,
        timeout: aiohttp.ClientTimeout,
        headers: dict[str, str],
    ) -> aiohttp.ClientResponse:
        session = self._get_session()
        try:
            return await session.request(
                method, self._base_url + path, data=body, timeout=timeout, headers=headers or None
            )
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(
                f"upstream {self._base_url} did not answer within {self._timeout:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream {self._base_url} is unreachable: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
            await asyncio.sleep(0)
