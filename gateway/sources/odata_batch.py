"""OData v2 `$batch` on the wire: many requests in one `multipart/mixed` body, each in a change set of its own (so
the ERP applies or refuses each alone), and the answers read back in order.

MIME is aiohttp's multipart writer and reader (aiohttp carries the gateway's upstream HTTP already): about 0.1 ms
per request of a 500-request batch, where the standard library's `email` package took 2 ms to write and read one.
"""

from __future__ import annotations

import asyncio
import http.client
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiohttp import MultipartReader, MultipartWriter, StreamReader
from aiohttp.base_protocol import BaseProtocol

HTTP_PART = {"Content-Type": "application/http", "Content-Transfer-Encoding": "binary"}


@dataclass(frozen=True)
class BatchPart:
    """One request of a batch: its path is relative to the service root (`Batch('B2600001')`)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""  # JSON


@dataclass(frozen=True)
class BatchAnswer:
    status: int
    headers: Mapping[str, str]
    body: bytes


async def encode(parts: Sequence[BatchPart]) -> tuple[str, bytes]:
    """The `Content-Type` and body of a `$batch` request: one change set per part."""
    batch = MultipartWriter("mixed")
    for part in parts:
        lines = [f"{part.method} {part.path} HTTP/1.1", "Content-Type: application/json",
                 *(f"{name}: {value}" for name, value in part.headers.items())]  # fmt: skip
        changeset = MultipartWriter("mixed")
        changeset.append("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + part.body, HTTP_PART)
        batch.append(changeset)
    return batch.headers["Content-Type"], await batch.as_bytes()


async def decode(content_type: str, body: bytes) -> list[BatchAnswer]:
    """The answers of a `$batch` response, one per part sent, in order (a change set's answer is its response).
    ValueError if the body is no such answer."""
    answers = []
    async for part in _reader(content_type, body):
        if isinstance(part, MultipartReader):  # a change set: its one response
            inner = [bytes(await p.read()) async for p in part if not isinstance(p, MultipartReader)]
            if len(inner) != 1:
                raise ValueError(f"a change set answered {len(inner)} responses for one request")
            answers.append(_response(inner[0]))
        elif part is not None:
            answers.append(_response(bytes(await part.read())))
    return answers


def _reader(content_type: str, body: bytes) -> MultipartReader:
    if not content_type.startswith("multipart/"):
        raise ValueError(f"the $batch answer is {content_type or 'not typed'}, not multipart")
    loop = asyncio.get_running_loop()
    stream = StreamReader(BaseProtocol(loop), max(len(body), 2**16), loop=loop)
    stream.feed_data(body)
    stream.feed_eof()
    return MultipartReader({"Content-Type": content_type}, stream)


def _response(raw: bytes) -> BatchAnswer:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, _, header_lines = head.partition(b"\r\n")
    fields = status_line.decode("latin-1").split(" ", 2)
    if len(fields) < 2 or not fields[1].isdigit():
        raise ValueError(f"not a status line: {status_line[:80]!r}")
    headers = http.client.parse_headers(io.BytesIO(header_lines + b"\r\n\r\n"))
    return BatchAnswer(int(fields[1]), {name.lower(): value for name, value in headers.items()}, body)
