"""The test servers really start, really serve, and are really gone afterwards; a server that cannot start fails."""

from __future__ import annotations

import glob
import os
import socket
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.services import (
    MQTT_URL_ENV,
    POSTGRES_URL_ENV,
    REDIS_URL_ENV,
    ServiceUnavailable,
    _server,
    _workdir,
    mosquitto,
    mqtt_connect,
    mqtt_packet,
    mqtt_string,
    postgres,
    redis,
    resp,
)

SERVICES: dict[str, tuple[Callable[[], AbstractContextManager[str]], str]] = {
    "postgres": (postgres, POSTGRES_URL_ENV),
    "redis": (redis, REDIS_URL_ENV),
    "mosquitto": (mosquitto, MQTT_URL_ENV),
}


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def _assert_refused(url: str) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", _port(url)), timeout=2).close()


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


async def test_postgres_stores_and_reads_rows_then_stops() -> None:
    with postgres() as url:
        assert url.startswith("postgresql+asyncpg://") and url.endswith("/lotgraph_test")
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.execute(text("CREATE TABLE lots (id text PRIMARY KEY, qty integer NOT NULL)"))
                await connection.execute(
                    text("INSERT INTO lots VALUES (:id, :qty)"), [{"id": "B1", "qty": 5}, {"id": "B2", "qty": 7}]
                )
            async with engine.connect() as connection:
                rows = (await connection.execute(text("SELECT id, qty FROM lots ORDER BY id"))).all()
                settings = {
                    name: (await connection.execute(text(f"SHOW {name}"))).scalar_one()
                    for name in ("listen_addresses", "fsync", "server_encoding")
                }
        finally:
            await engine.dispose()
        assert [tuple(row) for row in rows] == [("B1", 5), ("B2", 7)]
        assert settings == {"listen_addresses": "127.0.0.1", "fsync": "off", "server_encoding": "UTF8"}
    _assert_refused(url)


def test_redis_sets_and_gets_then_stops() -> None:
    with redis() as url, socket.create_connection(("127.0.0.1", _port(url)), timeout=5) as sock:
        assert url.endswith("/0")
        sock.sendall(resp("SET", "lot:B1", "RELEASED"))
        assert _read_exactly(sock, 5) == b"+OK\r\n"
        sock.sendall(resp("GET", "lot:B1"))
        assert _read_exactly(sock, 14) == b"$8\r\nRELEASED\r\n"
    _assert_refused(url)


def test_mosquitto_delivers_a_published_message_then_stops() -> None:
    with mosquitto() as url:
        address = ("127.0.0.1", _port(url))
        with socket.create_connection(address, timeout=5) as subscriber, socket.create_connection(address) as publisher:
            mqtt_connect(subscriber, "test-subscriber")
            subscriber.sendall(mqtt_packet(0x82, b"\x00\x01" + mqtt_string("lots/B1") + b"\x00"))  # SUBSCRIBE, QoS 0
            assert _read_exactly(subscriber, 5) == b"\x90\x03\x00\x01\x00"  # SUBACK granting QoS 0

            mqtt_connect(publisher, "test-publisher")
            publisher.sendall(mqtt_packet(0x30, mqtt_string("lots/B1") + b"ON_HOLD"))  # PUBLISH, QoS 0

            expected = mqtt_packet(0x30, mqtt_string("lots/B1") + b"ON_HOLD")
            assert _read_exactly(subscriber, len(expected)) == expected
    _assert_refused(url)


def test_server_and_directory_are_gone_even_when_the_test_body_raises() -> None:
    pattern = os.path.join(tempfile.gettempdir(), "lotgraph-redis-*")
    before = set(glob.glob(pattern))
    with pytest.raises(RuntimeError, match="test body failed"), redis() as url:
        assert set(glob.glob(pattern)) - before
        raise RuntimeError("test body failed")
    _assert_refused(url)
    assert not set(glob.glob(pattern)) - before


@pytest.mark.parametrize("name", SERVICES)
def test_an_operator_url_is_used_when_it_answers_and_refused_when_not(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, variable = SERVICES[name]
    with service() as url:
        monkeypatch.setenv(variable, url)
        with service() as operator_url:
            assert operator_url == url
    with pytest.raises(ServiceUnavailable, match=variable), service():
        pass


def test_a_server_that_dies_at_startup_fails_with_its_log_tail() -> None:
    def argv(port: int) -> list[str]:
        return ["sh", "-c", f"echo 'cannot listen on {port}: disk on fire' >&2; exit 3"]

    with (
        pytest.raises(ServiceUnavailable, match=r"(?s)status 3.*disk on fire"),
        _workdir("broken") as work,
        _server("Broken", argv, lambda port: False, work),
    ):
        pytest.fail("a dead server must not be yielded")
