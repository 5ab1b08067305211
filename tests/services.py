"""Throwaway PostgreSQL, Redis, Mosquitto and Prometheus servers for tests, on loopback and in a temporary
directory; Debian's Chromium for the browser test (`chromium()`) and Prometheus's `promtool` (`promtool()`),
installed the same way when missing.

Project rule: `make test` starts whatever a test needs and is missing, and stops what it started. So each
context manager here yields a URL and either uses an operator's server (env `LOTGRAPH_TEST_*_URL`) or starts a
private one on 127.0.0.1 on a free port below the ephemeral range, installing the Debian package when the binary
is missing and we are root. Whatever it started is killed and its directory removed on exit, even when the test
body raises. When a server cannot be had, `ServiceUnavailable` says what failed and how to fix it: tests then
fail, never skip, so CI cannot pass without the servers it needs.
"""

from __future__ import annotations

import asyncio
import fcntl
import glob
import os
import pwd
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

POSTGRES_URL_ENV = "LOTGRAPH_TEST_POSTGRES_URL"
REDIS_URL_ENV = "LOTGRAPH_TEST_REDIS_URL"
MQTT_URL_ENV = "LOTGRAPH_TEST_MQTT_URL"
CHROMIUM_ENV = "LOTGRAPH_TEST_CHROMIUM"  # a Chromium executable for the browser tests, instead of Debian's
PROMETHEUS_ENV = "LOTGRAPH_TEST_PROMETHEUS_BIN"  # a directory with `prometheus` and `promtool`, instead of Debian's

POSTGRES_USER = "lotgraph"
POSTGRES_DATABASE = "lotgraph_test"
START_TIMEOUT = 30.0  # seconds for a started server to accept connections
SERVICE_USER = "lotgraph-test"  # unprivileged account the servers run as when we are root (postgres refuses root)

_APT_LOCK = "/run/lock/lotgraph-test-apt.lock"
_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_apt_updated = False
_user_lock = threading.Lock()
_apt_lock = threading.Lock()  # with the file lock, one apt-get at a time across threads and processes


class ServiceUnavailable(RuntimeError):
    """A server a test needs could not be found, installed, started or reached; the message says how to fix it."""


# --- public context managers -------------------------------------------------------------------------------------


def chromium() -> str:
    """The path of a Chromium for browser tests (Playwright drives it): `LOTGRAPH_TEST_CHROMIUM`, else Debian's
    `chromium`, installed when missing; never a browser downloaded by `playwright install`."""
    if path := os.environ.get(CHROMIUM_ENV):
        return path

    def find() -> str | None:
        return shutil.which("chromium")

    if path := find():
        return path
    _apt_install("Chromium", "chromium", [], find)  # a browser, no daemon to keep from starting
    if path := find():
        return path
    raise ServiceUnavailable("Chromium: apt-get installed chromium, but `chromium` is still not on PATH")


@contextmanager
def postgres() -> Iterator[str]:
    """Yield `postgresql+asyncpg://lotgraph@127.0.0.1:PORT/lotgraph_test` for a private, trust-auth cluster."""
    if url := os.environ.get(POSTGRES_URL_ENV):
        _require(_postgres_problem(url), f"PostgreSQL at {POSTGRES_URL_ENV}={url}")
        yield url
        return
    bindir = _postgres_bindir()
    with _workdir("postgres") as work:
        data, sockets = work / "data", work / "sockets"
        sockets.mkdir()
        _chown(sockets)
        # --no-sync and the -c settings below trade durability (useless for a throwaway cluster) for speed.
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", POSTGRES_USER, "-A", "trust", "-E", "UTF8"]
        _run("PostgreSQL initdb", [*initdb, "--locale=C", "--no-sync"], cwd=work)

        def argv(port: int) -> list[str]:
            settings = {
                "listen_addresses": "127.0.0.1",
                "port": port,
                "unix_socket_directories": sockets,
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
            }
            return [str(bindir / "postgres"), "-D", str(data), *(f"-c{key}={value}" for key, value in settings.items())]

        def url(port: int, database: str = POSTGRES_DATABASE) -> str:
            return f"postgresql+asyncpg://{POSTGRES_USER}@127.0.0.1:{port}/{database}"

        def ready(port: int) -> bool:
            return _postgres_problem(url(port, "postgres")) is None

        # SIGQUIT is PostgreSQL's immediate shutdown: nothing is worth flushing in a cluster about to be deleted.
        with _server("PostgreSQL", argv, ready, work, signal.SIGQUIT) as port:
            _in_thread(_create_database(url(port, "postgres"), POSTGRES_DATABASE))
            yield url(port)


@contextmanager
def redis() -> Iterator[str]:
    """Yield `redis://127.0.0.1:PORT/0` for a private Redis that keeps nothing on disk."""
    if url := os.environ.get(REDIS_URL_ENV):
        _require(_redis_problem(url), f"Redis at {REDIS_URL_ENV}={url}")
        yield url
        return
    binary = _binary("Redis", "redis-server", "redis-server")
    with _workdir("redis") as work:

        def argv(port: int) -> list[str]:
            flags = {"port": port, "bind": "127.0.0.1", "save": "", "appendonly": "no", "dir": work, "logfile": ""}
            return [binary, *(item for key, value in flags.items() for item in (f"--{key}", str(value)))]

        with _server("Redis", argv, lambda port: _redis_problem(f"redis://127.0.0.1:{port}/0") is None, work) as port:
            yield f"redis://127.0.0.1:{port}/0"


@contextmanager
def mosquitto() -> Iterator[str]:
    """Yield `mqtt://127.0.0.1:PORT` for a private, anonymous, non-persistent Mosquitto broker."""
    if url := os.environ.get(MQTT_URL_ENV):
        _require(_mqtt_problem(url), f"MQTT broker at {MQTT_URL_ENV}={url}")
        yield url
        return
    binary = _binary("Mosquitto", "mosquitto", "mosquitto")
    with _workdir("mosquitto") as work:

        def argv(port: int) -> list[str]:
            config = work / f"mosquitto-{port}.conf"
            config.write_text(
                f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n",
                encoding="utf-8",
            )
            _chown(config)
            return [binary, "-c", str(config)]

        with _server("Mosquitto", argv, lambda port: _mqtt_problem(f"mqtt://127.0.0.1:{port}") is None, work) as port:
            yield f"mqtt://127.0.0.1:{port}"


def promtool() -> str:
    """The path of Prometheus's `promtool` (rule checks and rule unit tests), installing Debian's `prometheus`."""
    return _prometheus_binary("promtool")


@contextmanager
def prometheus(config: Callable[[Path], str]) -> Iterator[str]:
    """Yield `http://127.0.0.1:PORT` for a private Prometheus whose configuration is `config(work)`: the YAML of
    prometheus.yml, given the server's working directory to put rule files in. Always started here, never an
    operator's (a test decides what it scrapes and evaluates); its TSDB lives in that directory."""
    binary = _prometheus_binary("prometheus")
    with _workdir("prometheus") as work:
        (work / "prometheus.yml").write_text(config(work), encoding="utf-8")
        for path in work.rglob("*"):
            _chown(path)

        def argv(port: int) -> list[str]:
            return [
                binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
            ]  # fmt: skip

        def ready(port: int) -> bool:
            with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(b"GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                return sock.recv(64).startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
            return False

        with _server("Prometheus", argv, ready, work) as port:
            yield f"http://127.0.0.1:{port}"


# --- readiness checks: real protocol exchanges, no extra dependencies ----------------------------------------------


def _postgres_problem(url: str) -> str | None:
    """None when asyncpg can log in (a TCP connect alone passes while the server still refuses logins), else why."""

    async def attempt() -> None:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1), timeout=2)
        await connection.close()

    try:
        _in_thread(attempt())
    except Exception as error:  # refused, still starting up, bad credentials, timeout: all mean "not usable yet"
        return f"{type(error).__name__}: {error}"
    return None


async def _create_database(url: str, name: str) -> None:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def resp(*args: str) -> bytes:
    """One Redis command in RESP, the wire format `redis-cli` sends."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _redis_problem(url: str) -> str | None:
    """None when Redis answers PING (after AUTH, when the URL has a password), else why not."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=2) as sock:
            if parts.password:
                sock.sendall(resp("AUTH", *filter(None, (parts.username, parts.password))))
                if not (answer := sock.recv(256)).startswith(b"+OK"):
                    return f"AUTH answered {answer!r}"
            sock.sendall(resp("PING"))
            answer = sock.recv(256)
    except OSError as error:
        return f"{type(error).__name__}: {error}"
    return None if answer.startswith(b"+PONG") else f"PING answered {answer!r}"


def mqtt_packet(kind: int, body: bytes) -> bytes:
    """An MQTT 3.1.1 control packet: type/flags byte, variable-length remaining length, body."""
    length, encoded = len(body), bytearray()
    while True:
        length, digit = divmod(length, 128)
        encoded.append(digit | (0x80 if length else 0))
        if not length:
            return bytes([kind, *encoded]) + body


def mqtt_string(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return len(data).to_bytes(2, "big") + data


def mqtt_connect(sock: socket.socket, client_id: str, username: str | None = None, password: str | None = None) -> None:
    """Send CONNECT (clean session) and raise unless the broker answers CONNACK with return code 0."""
    flags = 0x02 | (0x80 if username else 0) | (0x40 if password else 0)
    payload = mqtt_string(client_id) + (mqtt_string(username) if username else b"")
    payload += mqtt_string(password) if password else b""
    sock.sendall(mqtt_packet(0x10, mqtt_string("MQTT") + bytes([4, flags, 0, 60]) + payload))
    connack = sock.recv(4)
    if connack != b"\x20\x02\x00\x00":
        raise ConnectionError(f"MQTT broker refused CONNECT: {connack!r}")


def _mqtt_problem(url: str) -> str | None:
    """None when the broker accepts an MQTT CONNECT (with the URL's credentials, if any), else why not."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 1883), timeout=2) as sock:
            mqtt_connect(sock, f"lotgraph-probe-{os.getpid()}", parts.username, parts.password)
            sock.sendall(mqtt_packet(0xE0, b""))  # DISCONNECT, so the broker logs a clean goodbye
    except OSError as error:
        return f"{type(error).__name__}: {error}"
    return None


# --- starting and stopping ---------------------------------------------------------------------------------------


@contextmanager
def _server(
    name: str,
    argv: Callable[[int], list[str]],
    ready: Callable[[int], bool],
    work: Path,
    stop_signal: signal.Signals = signal.SIGTERM,
) -> Iterator[int]:
    """Run `argv(port)` until `ready(port)`; yield the port; kill the server's whole process group afterwards.

    A port can be taken between choosing and binding it, so a server that exits with "in use" is retried on another.
    """
    log = work / f"{name.lower()}.log"
    for attempt in range(3):
        port = _free_port()
        command = argv(port)
        with log.open("wb") as output:
            process = subprocess.Popen(
                command,
                cwd=work,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stopping it reaches every child
                **_as_service_user(),
            )
        try:
            if _wait_until_ready(process, ready, port):
                break
        except BaseException:
            _stop(process, stop_signal)
            raise
        if process.returncode is None:
            _stop(process, stop_signal)
            raise ServiceUnavailable(
                f"{name} did not accept connections on 127.0.0.1:{port} within {START_TIMEOUT:.0f} s "
                f"(command: {shlex.join(command)}). Its log ends:\n{_tail(log)}"
            )
        _stop(process, stop_signal)  # it exited by itself: reap it and anything it left in its process group
        if "in use" not in _tail(log) or attempt == 2:
            raise ServiceUnavailable(
                f"{name} exited with status {process.returncode} before accepting connections on 127.0.0.1:{port} "
                f"(command: {shlex.join(command)}). Its log ends:\n{_tail(log)}"
            )
    try:
        yield port
    finally:
        _stop(process, stop_signal)


def _wait_until_ready(process: subprocess.Popen[bytes], ready: Callable[[int], bool], port: int) -> bool:
    """Poll `ready(port)` until it holds (True), the process exits or START_TIMEOUT passes (False)."""
    deadline = time.monotonic() + START_TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        if _listens(process.pid, port) and ready(port):
            return True
        time.sleep(0.05)
    return False


def _listens(pid: int, port: int) -> bool:
    """True when `pid` itself holds the listening socket on 127.0.0.1:port.

    Without this, a server of the same kind that took the port between our choice and our bind would answer the
    readiness probe, and the test would talk to a stranger while ours is exiting with "address in use".
    """
    local = f"0100007F:{port:04X}"  # /proc/net/tcp spells 127.0.0.1 little-endian, ports big-endian
    with suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[3] == "0A":  # 0A: LISTEN
                inode = f"socket:[{fields[9]}]"
                return any(os.readlink(fd) == inode for fd in Path(f"/proc/{pid}/fd").iterdir())
    return False


def _stop(process: subprocess.Popen[bytes], stop_signal: signal.Signals) -> None:
    """Ask the server to stop, then SIGKILL its process group so no child outlives the test."""
    with suppress(ProcessLookupError):
        process.send_signal(stop_signal)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextmanager
def _workdir(service: str) -> Iterator[Path]:
    """A fresh temporary directory owned by the service user, removed on exit whatever happened."""
    work = Path(tempfile.mkdtemp(prefix=f"lotgraph-{service}-"))
    try:
        _chown(work)
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _free_port() -> int:
    """A free loopback port below Linux's ephemeral range (32768+), where outgoing connections cannot take it."""
    for _ in range(200):
        port = random.randrange(20_000, 32_000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise ServiceUnavailable("no free port on 127.0.0.1 between 20000 and 32000; stop whatever holds them")


def _run(what: str, argv: list[str], cwd: Path) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, **_as_service_user())
    if result.returncode != 0:
        raise ServiceUnavailable(
            f"{what} failed with status {result.returncode} (command: {shlex.join(argv)}):\n"
            + _last_lines(result.stdout + result.stderr)
        )


def _tail(log: Path) -> str:
    try:
        return _last_lines(log.read_text(encoding="utf-8", errors="replace"))
    except OSError as error:
        return f"(log unreadable: {error})"


def _last_lines(output: str, count: int = 30) -> str:
    return "\n".join(output.strip().splitlines()[-count:]) or "(no output)"


def _require(problem: str | None, server: str) -> None:
    if problem is not None:
        raise ServiceUnavailable(
            f"{server} is not usable ({problem}). Start that server, or unset the variable to let the tests start one."
        )


def _in_thread(coroutine: Any) -> Any:
    """Run a coroutine to completion on a private loop, so this works whether or not the caller has a running loop."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(coroutine)
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


# --- running as an unprivileged user -----------------------------------------------------------------------------


def _service_user() -> pwd.struct_passwd | None:
    """None when we are not root; else the unprivileged account, created on first use (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    with _user_lock:
        try:
            return pwd.getpwnam(SERVICE_USER)
        except KeyError:
            pass
        useradd = shutil.which("useradd", path=_SBIN_PATH) or "useradd"
        options = "--system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin"
        result = subprocess.run([useradd, *options.split(), SERVICE_USER], capture_output=True, text=True, check=False)
        try:
            return pwd.getpwnam(SERVICE_USER)  # a concurrent test process may have created it: fine either way
        except KeyError:
            raise ServiceUnavailable(
                f"cannot create the unprivileged user {SERVICE_USER!r} that test servers run as "
                f"({result.stderr.strip()}). Create it: useradd --system --user-group {SERVICE_USER}"
            ) from None


def _as_service_user() -> dict[str, Any]:
    user = _service_user()
    return {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _chown(path: Path) -> None:
    if user := _service_user():
        os.chown(path, user.pw_uid, user.pw_gid)


# --- finding and installing binaries ------------------------------------------------------------------------------


def _postgres_bindir() -> Path:
    """The newest `/usr/lib/postgresql/N/bin`, else the directory of `initdb` on PATH; installs when neither."""

    def find() -> Path | None:
        def version(bindir: str) -> int:
            digits = Path(bindir).parent.name
            return int(digits) if digits.isdigit() else 0

        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
        if initdb := shutil.which("initdb", path=os.environ.get("PATH", "") + ":" + _SBIN_PATH):
            candidates.append(str(Path(initdb).resolve().parent))
        for candidate in candidates:
            if all(os.access(Path(candidate) / tool, os.X_OK) for tool in ("initdb", "postgres")):
                return Path(candidate)
        return None

    if bindir := find():
        return bindir
    _apt_install("PostgreSQL", "postgresql", ["postgres"], find)
    if bindir := find():
        return bindir
    raise ServiceUnavailable("PostgreSQL: apt-get installed postgresql, but initdb/postgres are still not found")


def _binary(name: str, executable: str, package: str, daemons: list[str] | None = None) -> str:
    """The path of `executable` (PATH plus the sbin directories), installing Debian's `package` when missing
    (`daemons`: the names of the processes it would start, when they are not `executable`)."""

    def find() -> str | None:
        return shutil.which(executable, path=os.environ.get("PATH", "") + ":" + _SBIN_PATH)

    if path := find():
        return path
    _apt_install(name, package, [executable] if daemons is None else daemons, find)
    if path := find():
        return path
    raise ServiceUnavailable(f"{name}: apt-get installed {package}, but {executable} is still not on PATH")


def _prometheus_binary(executable: str) -> str:
    """`prometheus` or `promtool`: from `LOTGRAPH_TEST_PROMETHEUS_BIN`, else Debian's `prometheus` package."""
    if directory := os.environ.get(PROMETHEUS_ENV):
        path = Path(directory) / executable
        if not os.access(path, os.X_OK):
            raise ServiceUnavailable(f"{PROMETHEUS_ENV}={directory} has no executable {executable}")
        return str(path)
    return _binary("Prometheus", executable, "prometheus", daemons=["prometheus"])


def _apt_install(name: str, package: str, daemons: list[str], present: Callable[[], object]) -> None:
    """`apt-get install` one package, serialised across processes, without letting it start its own daemon.

    `present` is asked again once we hold the lock: a concurrent test process may have installed it meanwhile.
    """
    global _apt_updated
    apt_get = shutil.which("apt-get", path=_SBIN_PATH)
    if os.geteuid() != 0 or apt_get is None:
        raise ServiceUnavailable(
            f"{name} is not installed and this process cannot install it "
            f"({'not root' if os.geteuid() != 0 else 'no apt-get'}). Fix: install it (Debian: "
            f"`sudo apt-get install {package}`), or point {_env_for(name)} at "
            f"{_what_to_point_at(name)}."
        )
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock_timeout = ["-o", "DPkg::Lock::Timeout=600"]
    Path(_APT_LOCK).parent.mkdir(parents=True, exist_ok=True)
    with _apt_lock, open(_APT_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be running apt-get right now
        if present():
            return
        print(f"tests/services.py: installing {package} with apt-get for {name}", file=sys.stderr)
        steps = [] if _apt_updated else [[apt_get, "-qq", *lock_timeout, "update"]]
        steps.append([apt_get, "-qq", "-y", *lock_timeout, "--no-install-recommends", "install", package])
        before = _daemon_pids(daemons)
        with _services_not_started():
            for step in steps:
                try:
                    result = subprocess.run(step, env=environment, capture_output=True, text=True, timeout=900)
                    status, output = result.returncode, result.stdout + result.stderr
                except subprocess.TimeoutExpired as timeout:
                    status, output = "timeout after 900 s", str(timeout.output or "")
                if status != 0:
                    raise ServiceUnavailable(
                        f"{name}: `{shlex.join(step)}` failed ({status}):\n{_last_lines(output)}\n"
                        f"Fix the package source, install {package} by hand, or set {_env_for(name)}."
                    )
                _apt_updated = _apt_updated or step[-1] == "update"
        for pid in _daemon_pids(daemons) - before:  # belt and braces, should policy-rc.d have been ignored
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


@contextmanager
def _services_not_started() -> Iterator[None]:
    """Debian's policy-rc.d hook: exit 101 forbids maintainer scripts to start services. Kept if one exists."""
    policy = Path("/usr/sbin/policy-rc.d")
    if policy.exists():
        yield
        return
    policy.write_text("#!/bin/sh\n# written by lotgraph tests/services.py while apt-get runs\nexit 101\n")
    policy.chmod(0o755)
    try:
        yield
    finally:
        policy.unlink(missing_ok=True)


def _daemon_pids(names: list[str]) -> set[int]:
    """Processes named like a package's daemon, excluding our own test servers (run as the service user)."""
    ours = user.pw_uid if (user := _service_user()) else os.geteuid()
    found = set()
    for entry in Path("/proc").iterdir():
        with suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() in names and entry.stat().st_uid != ours:
                found.add(int(entry.name))
    return found


def _what_to_point_at(name: str) -> str:
    return {"Chromium": "its executable", "Prometheus": "a directory with prometheus and promtool"}.get(
        name, "a running server"
    )


def _env_for(name: str) -> str:
    return {
        "PostgreSQL": POSTGRES_URL_ENV,
        "Redis": REDIS_URL_ENV,
        "Mosquitto": MQTT_URL_ENV,
        "Chromium": CHROMIUM_ENV,
        "Prometheus": PROMETHEUS_ENV,
    }[name]
