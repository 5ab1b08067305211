"""Bearer JWT authentication: claims to Principal, each classic attack refused with its own reason,
keys from a JWKS served over loopback (rotation, rate-limited refetches) or from a key file, and the
`lotgraph token` development command."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, Key, RSAKey
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.auth import (
    DEV_PERSONAS,
    Authenticator,
    AuthSettings,
    DevSigner,
    Principal,
    Unauthenticated,
    build_authenticator,
    mint_personas,
)
from gateway.cli import main
from gateway.errors import ConfigurationError
from gateway.servers import ServerGroup, free_port
from gateway.settings import Mode
from tests.conftest import Plant, start_gateway
from tests.events import WsClient

ISSUER = "https://idp.plant.example"
AUDIENCE = "lotgraph"
K1 = RSAKey.generate_key(2048, parameters={"kid": "k1"})
K2 = RSAKey.generate_key(2048, parameters={"kid": "k2"})
EC = ECKey.generate_key("P-256", parameters={"kid": "ec1"})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-17", "iat": now, "exp": now + 600, "roles": ["auditor"]}
    return {key: value for key, value in {**base, **changes}.items() if value is not None}


def sign(key: Key = K1, alg: str = "RS256", **changes: Any) -> str:
    return jwt.encode({"alg": alg, "kid": key.kid}, claims(**changes), key, algorithms=[alg])


def forge(header: dict[str, Any], secret: bytes | None, **changes: Any) -> str:
    """A token built by hand: `secret` None leaves the signature empty (`alg: none`)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims(**changes)).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest() if secret else b""
    return f"{signing_input}.{b64(signature)}"


def jwks(*keys: Key) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False) for key in keys]}


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "jwks.json"
    path.write_text(json.dumps(jwks(K1, EC)))
    return path


@pytest.fixture(scope="module")
def authenticator(key_file: Path) -> Authenticator:
    return Authenticator(AuthSettings(issuer=ISSUER, audience=AUDIENCE, key_file=key_file))


async def refusal(authenticator: Authenticator, authorization: str | None) -> str:
    with pytest.raises(Unauthenticated) as refused:
        await authenticator.authenticate(authorization)
    assert refused.value.code == "UNAUTHENTICATED"
    return refused.value.reason


async def test_a_valid_token_becomes_a_principal(authenticator: Authenticator) -> None:
    token = sign(
        name="Ada Auditor",
        roles=["quality_engineer", "auditor"],
        plants=["P100", "P200"],
        supplier_id="100042",
        amr=["pwd", "mfa"],
        auth_time=1_900_000_000,
    )
    principal = await authenticator.authenticate(f"Bearer {token}")
    assert principal == Principal(
        sub="u-17",
        name="Ada Auditor",
        roles=frozenset({"quality_engineer", "auditor"}),
        plants=frozenset({"P100", "P200"}),
        supplier_id="100042",
        amr=frozenset({"pwd", "mfa"}),
        auth_time=datetime.fromtimestamp(1_900_000_000, UTC),
        expires_at=datetime.fromtimestamp(claims()["exp"], UTC),
    )
    assert principal.has_mfa and principal.covers_plant("P200") and not principal.covers_plant("P300")
    assert principal.auth_age_seconds(datetime.fromtimestamp(1_900_000_042, UTC)) == 42


async def test_audience_lists_es256_and_leeway(authenticator: Authenticator) -> None:
    listed = await authenticator.authenticate(f"bearer {sign(aud=['portal', AUDIENCE])}")
    assert listed is not None and listed.name == "u-17" and listed.plants == frozenset()
    assert await authenticator.authenticate(f"Bearer {sign(EC, 'ES256')}") is not None
    assert await authenticator.authenticate(f"Bearer {sign(exp=int(time.time()) - 10)}") is not None, "30 s leeway"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: sign(exp=int(time.time()) - 120), "the token has expired"),
        (lambda: sign(aud="another-app"), "the token is not meant for audience 'lotgraph'"),
        (lambda: sign(iss="https://evil.example"), f"the token was not issued by {ISSUER}"),
        (lambda: sign(nbf=int(time.time()) + 600), "the token is not valid yet"),
        (lambda: sign(sub=None), "the token lacks the required claim(s) sub"),
        (lambda: sign(exp=None), "the token lacks the required claim(s) exp"),
        (lambda: sign(K2), "the token was signed with an unknown key (kid 'k2')"),
        (lambda: forge({"alg": "none", "typ": "JWT"}, None), "the token's algorithm 'none' is not allowed"),
        (
            lambda: forge({"alg": "HS256", "kid": "k1"}, K1.as_pem(private=False)),
            "the token's algorithm 'HS256' is not allowed",
        ),
        (lambda: sign(EC, "ES256", roles=["x"]).replace("eyJ", "eyK", 1), "the bearer token is not a well-formed JWT"),
        (lambda: "not-a-jwt", "the bearer token is not a well-formed JWT"),
        (lambda: sign(roles="qa_manager auditor", plants=[1]), "the token's 'plants' claim must be a list of strings"),
    ],
    ids=[
        "expired",
        "wrong-audience",
        "wrong-issuer",
        "not-yet-valid",
        "no-sub",
        "no-exp",
        "unknown-key",
        "alg-none",
        "hs256-with-public-key",
        "garbled",
        "not-a-jwt",
        "bad-claim-type",
    ],
)
async def test_attacks_are_refused_with_their_own_reason(authenticator: Authenticator, token: Any, reason: str) -> None:
    assert await refusal(authenticator, f"Bearer {token()}") == reason


async def test_a_tampered_payload_fails_the_signature(authenticator: Authenticator) -> None:
    header, _, signature = sign().split(".")
    promoted = b64(json.dumps(claims(roles=["qa_manager"], plants=["*"])).encode())
    assert await refusal(authenticator, f"Bearer {header}.{promoted}.{signature}") == (
        "the token's signature does not verify"
    )
    assert await refusal(authenticator, f"Bearer {sign(EC, 'ES256')[:-4]}AAAA") == (
        "the token's signature does not verify"
    )


async def test_keys_the_token_brings_along_are_ignored(authenticator: Authenticator) -> None:
    attacker = ECKey.generate_key("P-256")
    header = {"alg": "ES256", "kid": "ec1", "jwk": attacker.as_dict(private=False), "jku": "https://evil.example/k"}
    token = jwt.encode(header, claims(roles=["qa_manager"]), attacker, algorithms=["ES256"])
    assert await refusal(authenticator, f"Bearer {token}") == "the token's signature does not verify"


async def test_missing_or_foreign_credentials(authenticator: Authenticator, key_file: Path) -> None:
    missing = Unauthenticated("the request has no Authorization header", error=None)
    with pytest.raises(Unauthenticated, match=missing.reason) as refused:
        await authenticator.authenticate(None)
    assert refused.value.www_authenticate == 'Bearer realm="lotgraph"'
    assert await refusal(authenticator, "Basic dXNlcjpwdw==") == "the Authorization header must use the Bearer scheme"
    anonymous = Authenticator(AuthSettings(issuer=ISSUER, key_file=key_file, allow_anonymous=True))
    assert await anonymous.authenticate(None) is None
    assert await refusal(anonymous, f"Bearer {sign(aud='x')}"), "a bad token is refused even then"


async def test_www_authenticate_escapes_what_the_attacker_chose(authenticator: Authenticator) -> None:
    token = jwt.encode({"alg": "RS256", "kid": 'x"\r\nSet-Cookie: a=b'}, claims(), K1, algorithms=["RS256"])
    with pytest.raises(Unauthenticated) as refused:
        await authenticator.authenticate(f"Bearer {token}")
    header = refused.value.www_authenticate
    assert header.startswith('Bearer realm="lotgraph", error="invalid_token", error_description="')
    assert "\r" not in header and "\n" not in header and '\\"' in header


def test_unsafe_algorithm_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="needs hmac_secret_file"):
        AuthSettings(algorithms=("RS256", "HS256"))
    with pytest.raises(ValidationError, match="'none' is not accepted"):
        AuthSettings(algorithms=("RS256", "none"))
    with pytest.raises(ValidationError, match="https"):
        AuthSettings(jwks_url="http://idp.plant.example/jwks")
    with pytest.raises(ConfigurationError, match="no keys"):
        Authenticator(AuthSettings())


async def test_anonymous_only_accepts_no_token() -> None:
    authenticator = Authenticator(AuthSettings(allow_anonymous=True))
    assert await authenticator.authenticate(None) is None
    assert "unknown key" in await refusal(authenticator, f"Bearer {sign()}")


async def test_hmac_only_with_its_own_secret_never_with_the_public_key(tmp_path: Path) -> None:
    (tmp_path / "public.pem").write_bytes(K1.as_pem(private=False))
    secret = b"0123456789abcdef0123456789abcdef-hmac"
    (tmp_path / "hmac.secret").write_bytes(secret + b"\n")
    settings = AuthSettings(
        issuer=ISSUER,
        key_file=tmp_path / "public.pem",
        hmac_secret_file=tmp_path / "hmac.secret",
        algorithms=("RS256", "HS256"),
    )
    both = Authenticator(settings)
    assert await both.authenticate(f"Bearer {forge({'alg': 'HS256'}, secret)}") is not None
    assert await both.authenticate(f"Bearer {sign()}") is not None, "a PEM key has no id: the token's kid is moot"
    unnamed = jwt.encode({"alg": "RS256"}, claims(), K1, algorithms=["RS256"])
    assert await both.authenticate(f"Bearer {unnamed}") is not None
    confused = forge({"alg": "HS256", "kid": K1.kid}, K1.as_pem(private=False))
    assert await refusal(both, f"Bearer {confused}") == "the token's signature does not verify"


def test_key_files_hold_public_keys_only(tmp_path: Path) -> None:
    private = tmp_path / "private.pem"
    private.write_bytes(K1.as_pem(private=True))
    with pytest.raises(ConfigurationError, match="neither a JWKS nor a PEM public key"):
        Authenticator(AuthSettings(key_file=private))
    symmetric = tmp_path / "oct.json"
    symmetric.write_text(json.dumps({"keys": [{"kty": "oct", "k": b64(b"x" * 32)}]}))
    with pytest.raises(ConfigurationError, match="no RSA or EC key"):
        Authenticator(AuthSettings(key_file=symmetric))


class IdentityProvider:
    """A JWKS endpoint on loopback whose key set a test can rotate, counting fetches."""

    def __init__(self) -> None:
        self.keys: list[Key] = [K1]
        self.fetches = 0

    async def serve(self, request: Request) -> JSONResponse:
        self.fetches += 1
        return JSONResponse(jwks(*self.keys))

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/jwks", self.serve)])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def idp_server() -> Iterator[tuple[IdentityProvider, str]]:
    idp = IdentityProvider()
    group = ServerGroup()
    listener = group.add("idp", idp.app())
    with group.running_in_thread():
        yield idp, f"{listener.url}/jwks"


@pytest.fixture
def idp(idp_server: tuple[IdentityProvider, str]) -> tuple[IdentityProvider, str]:
    provider, url = idp_server
    provider.keys, provider.fetches = [K1], 0
    return provider, url


async def test_jwks_rotation_cache_and_refetch_rate_limit(idp: tuple[IdentityProvider, str]) -> None:
    provider, url = idp
    clock = Clock()
    authenticator = Authenticator(AuthSettings(issuer=ISSUER, jwks_url=url), clock=clock)

    assert await authenticator.authenticate(f"Bearer {sign(K1)}") is not None
    assert await authenticator.authenticate(f"Bearer {sign(K1)}") is not None
    assert provider.fetches == 1, "cached"

    provider.keys = [K1, K2]  # the IdP rotates: a new key appears
    clock.now += 11
    assert await authenticator.authenticate(f"Bearer {sign(K2)}") is not None
    assert provider.fetches == 2, "an unknown kid triggers one refetch"

    forged = [jwt.encode({"alg": "RS256", "kid": f"forged-{n}"}, claims(), K1, algorithms=["RS256"]) for n in range(5)]
    for token in forged:
        assert "unknown key" in await refusal(authenticator, f"Bearer {token}")
    assert provider.fetches == 2, "no refetch within 10 s of the last one, however many kids are forged"
    clock.now += 11
    for token in forged:
        await refusal(authenticator, f"Bearer {token}")
    assert provider.fetches == 3, "then one, and again no more"

    provider.keys = [K2]
    clock.now += 300
    assert "unknown key" in await refusal(authenticator, f"Bearer {sign(K1)}")
    assert provider.fetches == 4, "the cache expired: K1 is gone for good"


async def test_a_verified_token_is_trusted_a_while_never_past_its_expiry_nor_its_key(
    idp: tuple[IdentityProvider, str],
) -> None:
    """Its signature is checked once a minute, not on every request; its expiry on every request; and once the IdP
    has dropped its key, it stops working when the keys are next fetched, as an unremembered token would."""
    provider, url = idp
    clock = Clock()
    settings = AuthSettings(issuer=ISSUER, jwks_url=url, leeway_seconds=0, verified_token_seconds=60)
    authenticator = Authenticator(settings, clock=clock)
    short = sign(K1, exp=int(time.time()) + 1)
    assert await authenticator.authenticate(f"Bearer {short}") is not None
    assert authenticator.verified is not None and short in authenticator.verified
    await asyncio.sleep(1.5)
    assert await refusal(authenticator, f"Bearer {short}") == "the token has expired"
    token = sign(K1, sub="u-18")
    assert (await authenticator.authenticate(f"Bearer {token}")).sub == "u-18"
    provider.keys = [K2]  # the IdP drops K1
    clock.now += 61
    assert await authenticator.authenticate(f"Bearer {token}") is not None, "K1 is still among the keys fetched"
    clock.now += 300
    assert "unknown key" in await refusal(authenticator, f"Bearer {token}")


async def test_an_unreachable_idp(idp: tuple[IdentityProvider, str]) -> None:
    dead = f"http://127.0.0.1:{free_port()}/jwks"
    never = Authenticator(AuthSettings(issuer=ISSUER, jwks_url=dead))
    assert await refusal(never, f"Bearer {sign()}") == "the identity provider's signing keys are unavailable"

    _, url = idp
    clock = Clock()
    authenticator = Authenticator(AuthSettings(issuer=ISSUER, jwks_url=url, jwks_cache_seconds=60), clock=clock)
    assert await authenticator.authenticate(f"Bearer {sign()}") is not None
    assert authenticator.remote is not None
    authenticator.remote.url = dead  # the IdP goes away
    clock.now += 61
    assert await authenticator.authenticate(f"Bearer {sign()}") is not None, "the keys we had stay in use"


async def test_dev_personas(tmp_path: Path) -> None:
    settings = AuthSettings()
    signer = DevSigner.load_or_create(tmp_path / "dev.pem")
    tokens = mint_personas(signer, settings, supplier_id="100042")
    assert set(tokens) == set(DEV_PERSONAS)
    authenticator = Authenticator(settings, dev_jwks=signer.jwks())
    principals = {name: await authenticator.authenticate(f"Bearer {token}") for name, token in tokens.items()}
    assert principals["supplier"] is not None and principals["supplier"].supplier_id == "100042"
    manager = principals["qa_manager"]
    assert manager is not None and manager.has_mfa and manager.all_plants and "qa_manager" in manager.roles
    engineer = principals["quality_engineer"]
    assert engineer is not None and engineer.plants == {"P100", "P200"} and not engineer.has_mfa
    operator = principals["plant_operator"]
    assert operator is not None and operator.plants == {"P100"} and operator.supplier_id is None


def test_dev_key_is_private_to_its_owner_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dev-signing-key.pem"
    first = DevSigner.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert DevSigner.load_or_create(path).jwks() == first.jwks()
    assert "d" not in first.jwks()["keys"][0], "the JWKS is public"


async def test_token_command_in_development(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOTGRAPH_MODE", "development")
    monkeypatch.setenv("LOTGRAPH_DATA_DIR", str(tmp_path))
    main(["token", "--role", "quality_engineer", "--plant", "P100", "--mfa", "--ttl-minutes", "5"])
    token = capsys.readouterr().out.strip()
    authenticator = build_authenticator(AuthSettings(), data_dir=tmp_path, development=True)
    principal = await authenticator.authenticate(f"Bearer {token}")
    assert principal is not None
    assert principal.sub == "dev-quality_engineer"
    assert principal.roles == {"quality_engineer"} and principal.plants == {"P100"} and principal.has_mfa
    assert principal.expires_at is not None
    assert 240 < (principal.expires_at - datetime.now(UTC)).total_seconds() <= 300
    assert (tmp_path / "dev-signing-key.pem").exists()


def test_token_command_is_refused_in_production(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOTGRAPH_MODE", "production")
    monkeypatch.setenv("LOTGRAPH_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as exited:
        main(["token", "--role", "qa_manager"])
    assert exited.value.code != 0
    assert "refused in production" in str(exited.value.code)
    assert capsys.readouterr().out == ""
    assert not (tmp_path / "dev-signing-key.pem").exists()


ODD_MOMENTS = [("exp", 1e20), ("exp", 2**70), ("auth_time", 1e20), ("auth_time", -1e20), ("iat", 1e20),
               ("exp", "soon")]  # fmt: skip


@pytest.mark.parametrize(("claim", "value"), ODD_MOMENTS, ids=[f"{c}={v}" for c, v in ODD_MOMENTS])
async def test_signed_moments_out_of_range_are_refused(authenticator: Authenticator, claim: str, value: Any) -> None:
    """A validly signed token whose NumericDate no clock reaches is refused, saying which claim, never an overflow."""
    assert claim in await refusal(authenticator, f"Bearer {sign(**{claim: value})}")


async def test_out_of_range_moments_over_http_and_websocket(plant: Plant, tmp_path: Path) -> None:
    """In production, a token with `exp` or `auth_time` of 1e20 is a 401 with a reason over HTTP, and closes the
    WebSocket 4403 with the reason (not an abrupt close)."""
    (key := tmp_path / "idp.json").write_text(json.dumps(jwks(K1)))
    auth = AuthSettings(issuer=ISSUER, audience=AUDIENCE, key_file=key)
    tokens = [sign(exp=1e20), sign(auth_time=1e20)]
    with start_gateway(plant, mode=Mode.PRODUCTION, auth=auth) as gateway:
        async with httpx2.AsyncClient(timeout=30) as client:
            answers = [await client.post(f"{gateway.url}/graphql", json={"query": "{ __typename }"},
                                         headers={"Authorization": f"Bearer {t}"}) for t in tokens]  # fmt: skip
        closes = []
        for token in tokens:
            async with WsClient.connect(gateway.url, token) as ws:
                closes.append(await ws.closed())
    assert [a.status_code for a in answers] == [401, 401]
    assert [a.json()["errors"][0]["extensions"]["code"] for a in answers] == ["UNAUTHENTICATED"] * 2
    assert "'exp'" in answers[0].json()["errors"][0]["message"]
    assert [c.code for c in closes] == [4403, 4403], closes
    assert all(c.reason.startswith("unauthenticated") and "claim" in c.reason for c in closes), closes
