"""OData v2 `$batch`: many requests in one, the way SAP clients send mass changes.

The body is `multipart/mixed`: each part a change set (itself `multipart/mixed`, holding one `application/http`
request) or a lone `application/http` read. The answer (`202`) is `multipart/mixed` with one part per part asked,
in the same order: a change set's answer is a change set holding its response; a change set that fails answers
with its error response alone. Each change set here holds one request, so none can be half applied. MIME is
aiohttp's multipart reader and writer (the standard library's `email` package took 3 ms per request).
"""

from __future__ import annotations

import asyncio
import http.client
import io
import json
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus

from aiohttp import BodyPartReader, MultipartReader, MultipartWriter, StreamReader
from aiohttp.base_protocol import BaseProtocol
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from simulators.odata import odata_error

HTTP_PART = {"Content-Type": "application/http", "Content-Transfer-Encoding": "binary"}
# One request of the batch: (method, path relative to the service root, headers, body) -> (status, headers, body)
Handler = Callable[[str, str, Mapping[str, str], bytes], Awaitable[tuple[int, dict[str, str], bytes]]]


def refusal(exc: HTTPException) -> tuple[int, dict[str, str], bytes]:
    """An `HTTPException` as one request's answer inside the batch (SAP's error body)."""
    body = json.dumps(odata_error(exc.status_code, exc.detail, getattr(exc, "code", None))).encode()
    return exc.status_code, {"Content-Type": "application/json"}, body


async def answer(request: Request, handle: Handler) -> Response:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/mixed"):
        raise HTTPException(400, "$batch takes a multipart/mixed body")
    body = await request.body()
    loop = asyncio.get_running_loop()
    stream = StreamReader(BaseProtocol(loop), max(len(body), 2**16), loop=loop)
    stream.feed_data(body)
    stream.feed_eof()
    answers = MultipartWriter("mixed")
    try:
        async for part in MultipartReader({"Content-Type": content_type}, stream):
            if isinstance(part, MultipartReader):  # a change set
                requests = [bytes(await p.read()) async for p in part if isinstance(p, BodyPartReader)]
                if len(requests) != 1:
                    one = HTTPException(400, "a change set must hold exactly one request")
                    answers.append(_http(*refusal(one)), HTTP_PART)
                    continue
                result = await _run(requests[0], handle)
                if result[0] >= 400:  # a failed change set answers with its error alone
                    answers.append(_http(*result), HTTP_PART)
                    continue
                changeset = MultipartWriter("mixed")
                changeset.append(_http(*result), HTTP_PART)
                answers.append(changeset)
            elif part is not None:
                answers.append(_http(*await _run(bytes(await part.read()), handle)), HTTP_PART)
    except (ValueError, AssertionError) as exc:  # aiohttp's reader on a body that is not the multipart it says
        raise HTTPException(400, f"$batch body is not multipart/mixed: {exc}") from exc
    content_type = answers.headers["Content-Type"]
    return Response(await answers.as_bytes(), status_code=202, headers={"Content-Type": content_type})


async def _run(raw: bytes, handle: Handler) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    line, _, header_lines = head.partition(b"\r\n")
    try:
        method, path, _version = line.decode("latin-1").split(" ")
    except ValueError:
        return refusal(HTTPException(400, f"not a request line: {line[:80]!r}"))
    headers = http.client.parse_headers(io.BytesIO(header_lines + b"\r\n\r\n"))
    try:
        return await handle(method, path, {k.lower(): v for k, v in headers.items()}, body)
    except HTTPException as exc:
        return refusal(exc)


def _http(status: int, headers: Mapping[str, str], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", *(f"{k}: {v}" for k, v in headers.items())]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body
