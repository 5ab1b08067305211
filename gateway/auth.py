"""Bearer JWT authentication: who is asking, established from a token the plant's identity provider signed.

The gateway only verifies tokens; it never issues them in production. Keys come from the IdP's JWKS URL or
a key file, never from the token; the algorithm must be on an allowlist and fit the key's type, so
`alg: none` is refused outright and an HS256 token is checked against the dedicated HMAC secret only, never
against a public key. `DevSigner` mints tokens for development and the demo, with a key the gateway trusts
only in development mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import math
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
from cachetools import TTLCache
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jws, jwt
from joserfc.errors import (
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import ECKey, Key, OctKey, RSAKey, import_key
from pydantic import BaseModel, Field, HttpUrl, field_validator, model_validator

from gateway.errors import ConfigurationError

log = logging.getLogger(__name__)
KEY_FILE = "LOTGRAPH_AUTH__KEY_FILE"  # the setting named when the key file is unusable

# Which key type may verify which algorithm. HMAC is deliberately absent: HS* tokens are verified with the
# dedicated secret only, so a public key can never double as an HMAC secret.
ASYMMETRIC = {
    **dict.fromkeys(("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"), "RSA"),
    **dict.fromkeys(("ES256", "ES384", "ES512"), "EC"),
}
HMAC = frozenset({"HS256", "HS384", "HS512"})
MIN_HMAC_SECRET_BYTES = 32
JWKS_MIN_REFETCH_SECONDS = 10.0
VERIFIED_TOKENS = 10_000  # distinct tokens remembered as verified: far more than a plant has callers at once
ALL_PLANTS = "*"
DEV_KEY_NAME = "dev-signing-key.pem"
DEV_ALGORITHM = "RS256"
LOOPBACK_HOSTS = {"localhost"}


class AuthSettings(BaseModel):
    """How the gateway verifies bearer tokens (`LOTGRAPH_AUTH__*`)."""

    issuer: str = "https://lotgraph.local/dev"
    audience: str = "lotgraph"
    jwks_url: HttpUrl | None = Field(default=None, description="The IdP's JWKS; https unless on loopback.")
    key_file: Path | None = Field(default=None, description="A PEM public key or a JWKS JSON file.")
    hmac_secret_file: Path | None = Field(default=None, description="Only with this may HS* tokens be accepted.")
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway_seconds: int = Field(default=30, ge=0)
    jwks_cache_seconds: int = Field(default=300, ge=0)
    verified_token_seconds: int = Field(
        default=60, ge=0, description="How long a token whose signature verified is not verified again (its times "
        "are checked on every request; a removed signing key stops it within this); 0: verify every request.",
    )  # fmt: skip
    allow_anonymous: bool = False
    anonymous_roles: tuple[str, ...] = Field(
        default=(), description="Roles an anonymous caller gets when anonymous calls are allowed (demo: portal_reader)."
    )
    dev_key_file: Path | None = Field(default=None, description=f"Default: <data_dir>/{DEV_KEY_NAME}.")

    @field_validator("jwks_url")
    @classmethod
    def _https_unless_loopback(cls, url: HttpUrl | None) -> HttpUrl | None:
        """Keys fetched over plain HTTP could be swapped in transit, which would let anyone mint tokens."""
        if url is not None and url.scheme != "https" and not is_loopback(url.host or ""):
            raise ValueError("jwks_url must use https (plain http only on loopback)")
        return url

    @model_validator(mode="after")
    def _safe_algorithms(self) -> AuthSettings:
        for name in self.algorithms:
            if name in HMAC and self.hmac_secret_file is None:
                raise ValueError(f"algorithm {name} needs hmac_secret_file: HMAC is never verified with a public key")
            if name not in ASYMMETRIC and name not in HMAC:
                raise ValueError(f"algorithm {name!r} is not accepted (allowed: {sorted({*ASYMMETRIC, *HMAC})})")
        return self

    def anonymous_principal(self) -> Principal:
        """Who an unauthenticated caller is, where that is allowed: nobody in particular, with the configured roles."""
        return Principal(
            sub="anonymous",
            name="anonymous",
            roles=frozenset(self.anonymous_roles),
            plants=frozenset({ALL_PLANTS}) if self.anonymous_roles else frozenset(),
            supplier_id=None,
            amr=frozenset(),
            auth_time=None,
            expires_at=None,
        )

    def dev_key_path(self, data_dir: Path) -> Path:
        return self.dev_key_file or data_dir / DEV_KEY_NAME


def is_loopback(host: str) -> bool:
    """A host on this machine: plain http to it crosses no network (the one place http is let through)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host in LOOPBACK_HOSTS


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, as the token's claims describe them."""

    sub: str
    name: str
    roles: frozenset[str]
    plants: frozenset[str]  # `*` means every plant
    supplier_id: str | None
    amr: frozenset[str]  # authentication methods (RFC 8176): `pwd`, `mfa`, ...
    auth_time: datetime | None
    expires_at: datetime | None

    @property
    def has_mfa(self) -> bool:
        return "mfa" in self.amr

    @property
    def all_plants(self) -> bool:
        return ALL_PLANTS in self.plants

    def covers_plant(self, plant: str) -> bool:
        return self.all_plants or plant in self.plants

    def auth_age_seconds(self, now: datetime) -> int | None:
        """Seconds since the holder authenticated (policies ask for a recent sign-in before a release)."""
        return None if self.auth_time is None else int((now - self.auth_time).total_seconds())

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Principal:
        supplier_id = claims.get("supplier_id")
        if supplier_id is not None and not isinstance(supplier_id, str):
            raise Unauthenticated("the token's 'supplier_id' claim must be a string")
        name = claims.get("name")
        return cls(
            sub=claims["sub"],
            name=name if isinstance(name, str) and name else claims["sub"],
            roles=_strings(claims, "roles"),
            plants=_strings(claims, "plants"),
            supplier_id=supplier_id,
            amr=_strings(claims, "amr"),
            auth_time=_moment(claims, "auth_time"),
            expires_at=_moment(claims, "exp"),
        )


def _strings(claims: Mapping[str, Any], name: str) -> frozenset[str]:
    """A list-of-strings claim; a single string counts as a space-separated list, as OAuth's `scope` does."""
    value = claims.get(name, [])
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return frozenset(value)
    raise Unauthenticated(f"the token's {name!r} claim must be a list of strings")


def _moment(claims: Mapping[str, Any], name: str) -> datetime | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Unauthenticated(f"the token's {name!r} claim must be a NumericDate")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):  # e.g. 1e20: signed, yet no moment a clock can reach
        raise Unauthenticated(f"the token's {name!r} claim is out of range") from None


class Unauthenticated(Exception):
    """The request did not prove who sent it; `reason` says why in a sentence a client developer can act on."""

    code = "UNAUTHENTICATED"

    def __init__(self, reason: str, *, error: str | None = "invalid_token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error  # RFC 6750 error code; None when no credentials were sent at all

    @property
    def extensions(self) -> dict[str, Any]:
        return {"code": self.code}

    @property
    def www_authenticate(self) -> str:
        """The `WWW-Authenticate` header of the 401 answer (RFC 6750, section 3)."""
        if self.error is None:
            return 'Bearer realm="lotgraph"'
        description = self.reason.replace("\\", "\\\\").replace('"', '\\"')
        return f'Bearer realm="lotgraph", error="{self.error}", error_description="{description}"'


def _shown(value: object) -> str:
    """An attacker-chosen value, safe to echo in a message or header: ASCII-escaped, bounded."""
    return ascii(value if not isinstance(value, str) else value[:64])


def _pick(keys: Iterable[Key], kid: str | None, alg: str) -> Key | None:
    """The key that may verify `alg` under `kid`: the one with that id, else one published without an id
    (a PEM key file has none); a token without a kid needs exactly one key to fit."""
    fitting = [
        key
        for key in keys
        if key.key_type == ASYMMETRIC[alg] and key.get("use") in (None, "sig") and key.alg in (None, alg)
    ]
    if kid is None:
        return fitting[0] if len(fitting) == 1 else None
    named = [key for key in fitting if key.kid == kid] or [key for key in fitting if key.kid is None]
    return named[0] if named else None


def _public_keys(document: Any) -> list[Key]:
    """The RSA and EC keys of a JWKS (or of a single JWK); symmetric keys there are ignored, never trusted."""
    if not isinstance(document, dict):
        raise ValueError("a JWKS must be a JSON object")
    entries = document.get("keys", [document] if "kty" in document else None)
    if not isinstance(entries, list):
        raise ValueError("a JWKS must have a 'keys' list")
    keys: list[Key] = []
    for entry in entries:
        if isinstance(entry, dict) and entry.get("kty") in ("RSA", "EC"):
            keys.append(import_key(entry))
    return keys


def load_key_file(path: Path) -> list[Key]:
    """Verification keys from a PEM public key or a JWKS JSON file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(KEY_FILE, f"cannot read {path}: {exc.strerror}") from exc
    if data.lstrip().startswith(b"{"):
        keys = _public_keys(json.loads(data))
    else:
        try:
            public = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise ConfigurationError(KEY_FILE, f"{path} holds neither a JWKS nor a PEM public key") from exc
        if isinstance(public, rsa.RSAPublicKey):
            keys = [RSAKey.import_key(public)]
        elif isinstance(public, ec.EllipticCurvePublicKey):
            keys = [ECKey.import_key(public)]
        else:
            raise ConfigurationError(KEY_FILE, f"{path}: only RSA and EC public keys verify tokens")
    if not keys:
        raise ConfigurationError(KEY_FILE, f"{path} holds no RSA or EC key")
    return keys


def _load_hmac_secret(path: Path) -> OctKey:
    secret = path.read_bytes().strip()
    if len(secret) < MIN_HMAC_SECRET_BYTES:
        raise ValueError(f"{path}: an HMAC secret needs at least {MIN_HMAC_SECRET_BYTES} bytes")
    return OctKey.import_key(secret)


class RemoteKeys:
    """The IdP's published keys, cached for `cache_seconds`.

    A token naming a key we do not have triggers a refetch (keys rotate), but fetches, successful or not,
    happen at most once per JWKS_MIN_REFETCH_SECONDS: forged key ids must not make us hammer the IdP.
    If a fetch fails, the keys we had stay in use.
    """

    def __init__(self, url: str, cache_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.cache_seconds = cache_seconds
        self.clock = clock
        self.keys: list[Key] = []
        self.fetched_at = -math.inf
        self.attempted_at = -math.inf
        self.lock = asyncio.Lock()

    async def find(self, kid: str | None, alg: str) -> Key | None:
        if self.clock() - self.fetched_at >= self.cache_seconds:
            await self.refresh()
        key = _pick(self.keys, kid, alg)
        if key is None and kid is not None:
            await self.refresh()
            key = _pick(self.keys, kid, alg)
        return key

    async def refresh(self) -> None:
        async with self.lock:  # one fetch at a time; whoever waited finds the attempt just made
            if self.clock() - self.attempted_at < JWKS_MIN_REFETCH_SECONDS:
                return
            self.attempted_at = self.clock()
            try:
                async with httpx2.AsyncClient(timeout=5.0) as client:
                    response = await client.get(self.url, headers={"Accept": "application/json"})
                    response.raise_for_status()
                self.keys = _public_keys(response.json())
                self.fetched_at = self.clock()
            except (httpx2.HTTPError, ValueError, JoseError) as exc:
                log.warning("could not fetch the JWKS at %s: %s", self.url, exc)
                if not self.keys:
                    raise Unauthenticated("the identity provider's signing keys are unavailable") from exc


class Authenticator:
    """Turns an `Authorization` header into a Principal, or says precisely why it cannot."""

    def __init__(
        self,
        settings: AuthSettings,
        *,
        dev_jwks: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.static_keys = [
            *(load_key_file(settings.key_file) if settings.key_file else []),
            *(_public_keys(dev_jwks) if dev_jwks else []),
        ]
        self.remote = (
            RemoteKeys(str(settings.jwks_url), settings.jwks_cache_seconds, clock) if settings.jwks_url else None
        )
        self.hmac_key = _load_hmac_secret(settings.hmac_secret_file) if settings.hmac_secret_file else None
        if not (self.static_keys or self.remote or self.hmac_key or settings.allow_anonymous):
            raise ConfigurationError(
                "LOTGRAPH_AUTH__JWKS_URL or LOTGRAPH_AUTH__KEY_FILE",
                "no keys to verify tokens with: set one (auth.jwks_url or auth.key_file in a config file)",
            )
        # HS* only with the dedicated secret, whatever else is configured: never an HMAC over a public key.
        self.algorithms = frozenset(
            name for name in settings.algorithms if name in ASYMMETRIC or (name in HMAC and self.hmac_key)
        )
        # A client sends the same token with every request: its RSA/EC signature is checked once in a while.
        self.verified: TTLCache[str, tuple[dict[str, Any], Principal]] | None = (
            TTLCache(maxsize=VERIFIED_TOKENS, ttl=settings.verified_token_seconds, timer=clock)
            if settings.verified_token_seconds
            else None
        )
        self.claims = jwt.JWTClaimsRegistry(
            leeway=settings.leeway_seconds,
            iss={"essential": True, "value": settings.issuer},
            aud={"essential": True, "value": settings.audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    async def authenticate(self, authorization: str | None) -> Principal | None:
        """The caller; None only for a request without credentials when anonymous access is allowed."""
        if not authorization:
            if self.settings.allow_anonymous:
                return None
            raise Unauthenticated("the request has no Authorization header", error=None)
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthenticated("the Authorization header must use the Bearer scheme", error="invalid_request")
        token = token.strip()
        if self.verified is not None and (known := self.verified.get(token)) is not None:
            claims, principal = known
            self._check_claims(claims)  # expired since it was verified: refused like any other
            return principal
        claims = await self.verify(token)
        principal = Principal.from_claims(claims)
        if self.verified is not None:
            self.verified[token] = (claims, principal)
        return principal

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token whose signature, algorithm, issuer, audience and lifetime all check out."""
        try:
            signed = jws.extract_compact(token.encode("ascii"))
        except (JoseError, UnicodeEncodeError) as exc:
            raise Unauthenticated("the bearer token is not a well-formed JWT") from exc
        header = signed.headers()
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise Unauthenticated(f"the token's algorithm {_shown(alg)} is not allowed")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("the token's key id (kid) is not a string")
        key = await self._key(kid, alg)
        try:
            valid = jws.validate_compact(signed, key, algorithms=[alg])
        except JoseError as exc:
            raise Unauthenticated("the token's signature does not verify") from exc
        if not valid:
            raise Unauthenticated("the token's signature does not verify")
        try:
            claims = json.loads(signed.payload)
        except ValueError as exc:
            raise Unauthenticated("the token's payload is not JSON") from exc
        if not isinstance(claims, dict):
            raise Unauthenticated("the token's payload is not a JSON object")
        self._check_claims(claims)
        return claims

    async def _key(self, kid: str | None, alg: str) -> Key:
        if alg in HMAC and self.hmac_key is not None:
            return self.hmac_key
        key = _pick(self.static_keys, kid, alg)
        if key is None and self.remote is not None:
            key = await self.remote.find(kid, alg)
        if key is None:
            if kid is None:
                raise Unauthenticated("the token names no key id (kid) and no single known key fits it")
            raise Unauthenticated(f"the token was signed with an unknown key (kid {_shown(kid)})")
        return key

    def _check_claims(self, claims: dict[str, Any]) -> None:
        try:
            self.claims.validate(claims)
        except ExpiredTokenError as exc:
            raise Unauthenticated("the token has expired") from exc
        except MissingClaimError as exc:
            raise Unauthenticated(f"the token lacks the required claim(s) {exc.claim}") from exc
        except InvalidClaimError as exc:
            raise Unauthenticated(self._invalid_claim(exc.claim)) from exc

    def _invalid_claim(self, claim: str) -> str:
        if claim == "nbf":
            return "the token is not valid yet"
        if claim == "iss":
            return f"the token was not issued by {self.settings.issuer}"
        if claim == "aud":
            return f"the token is not meant for audience {self.settings.audience!r}"
        return f"the token's {claim!r} claim is invalid"


def build_authenticator(settings: AuthSettings, *, data_dir: Path, development: bool) -> Authenticator:
    """The gateway's authenticator; in development it also trusts the dev signing key (`lotgraph token`)."""
    dev_jwks = DevSigner.load_or_create(settings.dev_key_path(data_dir)).jwks() if development else None
    return Authenticator(settings, dev_jwks=dev_jwks)


class DevSigner:
    """A local RSA key that mints development tokens; the gateway trusts it only in development mode."""

    def __init__(self, key: RSAKey) -> None:
        key.ensure_kid()
        self.key = key

    @classmethod
    def load_or_create(cls, path: Path) -> DevSigner:
        """The key at `path`, created (mode 0600) if missing; concurrent creators end up sharing one key."""
        with contextlib.suppress(FileNotFoundError):
            return cls(RSAKey.import_key(path.read_bytes()))
        path.parent.mkdir(parents=True, exist_ok=True)
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        descriptor, scratch = tempfile.mkstemp(dir=path.parent, prefix=".dev-key-")  # created 0600
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(pem)
            os.link(scratch, path)  # atomic, and fails rather than replacing a key another process just made
        except FileExistsError:
            return cls(RSAKey.import_key(path.read_bytes()))
        finally:
            os.unlink(scratch)
        return cls(RSAKey.import_key(pem))

    @property
    def kid(self) -> str:
        return str(self.key.kid)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.as_dict(private=False, alg=DEV_ALGORITHM, use="sig")]}

    def mint(
        self,
        sub: str,
        *,
        roles: Iterable[str],
        plants: Iterable[str] = (),
        supplier_id: str | None = None,
        name: str | None = None,
        amr: Iterable[str] = ("pwd",),
        auth_time: datetime | None = None,
        ttl: timedelta = timedelta(hours=8),
        issuer: str,
        audience: str,
    ) -> str:
        """A signed token; `auth_time` defaults to now (the holder "logged in" when it was minted)."""
        now = datetime.now(UTC)
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "sub": sub,
            "name": name or sub,
            "roles": sorted(set(roles)),
            # A router in front enforces @requiresScopes on `scope`; lotgraph's scopes are its role names.
            "scope": " ".join(sorted(set(roles))),
            "plants": sorted(set(plants)),
            "amr": sorted(set(amr)),
            "auth_time": int((auth_time or now).timestamp()),
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
            "jti": str(uuid.uuid4()),
        }
        if supplier_id is not None:
            claims["supplier_id"] = supplier_id
        return jwt.encode({"alg": DEV_ALGORITHM, "kid": self.kid}, claims, self.key, algorithms=[DEV_ALGORITHM])


@dataclass(frozen=True)
class Persona:
    """A ready-made demo identity; `supplier` personas get the supplier id chosen when minting."""

    name: str
    roles: tuple[str, ...]
    plants: tuple[str, ...] = ()
    amr: tuple[str, ...] = ("pwd",)
    supplier: bool = False


DEV_PERSONAS: Mapping[str, Persona] = {
    "quality_engineer": Persona("Quinn Quality (quality engineer)", ("quality_engineer",), ("P100", "P200")),
    "qa_manager": Persona(
        "Maria Manager (QA manager, qualified person)", ("qa_manager",), (ALL_PLANTS,), ("pwd", "mfa")
    ),
    "plant_operator": Persona("Otto Operator (plant operator)", ("plant_operator",), ("P100",)),
    "supplier": Persona("Sam Supplier (supplier portal)", ("supplier",), supplier=True),
    "auditor": Persona("Ada Auditor (auditor)", ("auditor",), (ALL_PLANTS,)),
    "portal_reader": Persona("Pat Portal (portal reader)", ("portal_reader",), (ALL_PLANTS,)),
}


def mint_persona(signer: DevSigner, settings: AuthSettings, key: str, supplier_id: str | None = None) -> str:
    """A token of the DEV_PERSONAS entry `key`; a supplier persona acts for `supplier_id`."""
    persona = DEV_PERSONAS[key]
    return signer.mint(
        f"dev-{key}",
        roles=persona.roles,
        plants=persona.plants,
        supplier_id=supplier_id if persona.supplier else None,
        name=persona.name,
        amr=persona.amr,
        issuer=settings.issuer,
        audience=settings.audience,
    )


def mint_personas(signer: DevSigner, settings: AuthSettings, supplier_id: str) -> dict[str, str]:
    """One token per DEV_PERSONAS entry, keyed like it; the supplier persona acts for `supplier_id`."""
    return {key: mint_persona(signer, settings, key, supplier_id) for key in DEV_PERSONAS}
