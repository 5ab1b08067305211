"""Gateway configuration: `LOTGRAPH_*` environment variables, optionally a YAML file.

Nested values use `__` (`LOTGRAPH_SOURCES__WMS__VERSION=1`). `LOTGRAPH_CONFIG=/etc/lotgraph.yaml`
adds a file whose values environment variables override. The default mode is production:
development conveniences (GraphiQL, introspection) have to be asked for.
"""

from __future__ import annotations

import logging
import os
import types
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from gateway.auth import DEV_PERSONAS, AuthSettings
from gateway.cache import CacheSettings
from gateway.errors import ConfigurationError
from gateway.events.settings import EventSettings
from gateway.limits import LimitSettings
from gateway.notifications.settings import NotificationSettings
from gateway.reconcile.settings import ReconciliationSettings
from gateway.resilience import ResilienceSettings
from gateway.telemetry import TelemetrySettings
from gateway.trusted import TrustedDocumentSettings
from gateway.workflows.settings import WorkflowSettings


class Mode(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class UpstreamAuth(BaseModel):
    """How the gateway proves itself to one upstream (`LOTGRAPH_SOURCES__ERP__AUTH__KIND=oauth2`, ...).

    Lives here rather than in `gateway/sources/credentials.py` (which uses it) because the sources package
    imports these settings."""

    kind: Literal["none", "oauth2", "api_key"] = "none"
    token_url: HttpUrl | None = Field(default=None, description="OAuth2 token endpoint (client credentials grant).")
    client_id: str | None = None
    client_secret: SecretStr | None = None
    scope: str | None = None
    api_key: SecretStr | None = None
    api_key_header: str = "X-API-Key"

    @model_validator(mode="after")
    def _complete(self) -> UpstreamAuth:
        needed = {"none": (), "oauth2": ("token_url", "client_id", "client_secret"), "api_key": ("api_key",)}
        missing = [name for name in needed[self.kind] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"auth kind {self.kind} needs {', '.join(missing)}")
        return self


class SourceSettings(BaseModel):
    """How to reach one upstream system."""

    url: HttpUrl
    version: int = Field(default=1, description="Contract version this source speaks, where it has several.")
    connect_timeout: float = 2.0
    read_timeout: float = 10.0
    max_batch_keys: int = Field(
        default=200, ge=1, description="Keys per upstream request when a batch has to go in a URL."
    )
    max_connections: int = 50
    auth: UpstreamAuth = UpstreamAuth()
    resilience: ResilienceSettings = ResilienceSettings()


class SubgraphSettings(SourceSettings):
    """A remote GraphQL subgraph lotgraph federates (`LOTGRAPH_SUBGRAPHS__LIMS__URL=http://lims/graphql`): the
    fields its SDL adds to lotgraph's entities join lotgraph's schema at start-up. Reached like a source system
    (timeouts, credentials, resilience), plus fixed headers and, if trusted, the caller's own token."""

    headers: dict[str, SecretStr] = Field(default_factory=dict, description="Sent with every request (API keys).")
    forward_authorization: bool = Field(
        default=False, description="Pass the caller's bearer token on (for a subgraph that trusts lotgraph's issuer)."
    )

    def header_values(self) -> dict[str, str]:
        """`headers` as sent on the wire."""
        return {key: value.get_secret_value() for key, value in self.headers.items()}


def _loopback_defaults(first_port: int) -> dict[str, dict[str, Any]]:
    """Sources at consecutive loopback ports (ERP, QMS, WMS, MES), as `lotgraph demo` lays them out."""
    return {
        "erp": {"url": f"http://127.0.0.1:{first_port}"},
        "qms": {"url": f"http://127.0.0.1:{first_port + 1}"},
        "wms": {"url": f"http://127.0.0.1:{first_port + 2}", "version": 2},
        "mes": {"url": f"http://127.0.0.1:{first_port + 3}"},
    }


class Sources(BaseModel):
    erp: SourceSettings
    qms: SourceSettings
    wms: SourceSettings
    mes: SourceSettings

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        """Merge what was configured into the loopback defaults, so one variable changes one value."""
        if not isinstance(data, dict):
            return data
        defaults = _loopback_defaults(8001)
        return {name: {**defaults[name], **dict(data.get(name) or {})} for name in defaults}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOTGRAPH_", env_nested_delimiter="__", extra="forbid")

    mode: Mode = Mode.PRODUCTION
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".lotgraph")
    store_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default: a SQLite file in the data directory."
    )
    auth: AuthSettings = Field(default_factory=AuthSettings)
    graphiql: bool | None = Field(default=None, description="Serve GraphiQL; default: only in development.")
    graphiql_persona: str | None = Field(
        default=None,
        description="Development only: pre-fill GraphiQL's Headers tab with a fresh token of this demo persona "
        "(the demo: qa_manager). Whoever can load the page gets the token, so it is never done unless asked for.",
    )
    introspection: bool | None = Field(default=None, description="Allow introspection; default: development.")
    sources: Sources = Field(default_factory=lambda: Sources.model_validate({}))
    limits: LimitSettings = Field(default_factory=LimitSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    redis_url: str | None = Field(
        default=None,
        description="Redis shared by replicas: read cache, quotas, event stream (redis://host:6379/0).",
    )
    trusted_documents: TrustedDocumentSettings = Field(default_factory=TrustedDocumentSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    workflows: WorkflowSettings = Field(default_factory=WorkflowSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    reconciliation: ReconciliationSettings = Field(default_factory=ReconciliationSettings)
    max_page_size: int = Field(default=1000, ge=1)
    operation_retry_seconds: float = Field(
        default=5.0, gt=0, description="How often pending operations are retried (a system that was down returns)."
    )
    subgraphs: dict[str, SubgraphSettings] = Field(
        default_factory=dict, description="Remote subgraphs whose entity fields lotgraph federates, by name."
    )
    router_directives: bool = Field(
        default=True,
        description="Show @authenticated/@requiresScopes in `_service { sdl }` (Apollo Router enforces them; "
        "Apollo Gateway for Node refuses a supergraph using them: turn this off behind it).",
    )
    max_genealogy_depth: int = Field(default=20, ge=1)
    default_genealogy_depth: int = Field(default=10, ge=1)

    @field_validator("graphiql_persona")
    @classmethod
    def _persona_only_in_development(cls, persona: str | None, info: ValidationInfo) -> str | None:
        """A pre-filled token in production would hand a role to anyone who opens the page."""
        if persona is not None and (persona not in DEV_PERSONAS or DEV_PERSONAS[persona].supplier):
            choices = ", ".join(key for key, p in DEV_PERSONAS.items() if not p.supplier)
            raise ValueError(f"must be one of {choices}")
        if persona is not None and info.data.get("mode") is not Mode.DEVELOPMENT:
            raise ValueError("pre-fills a development token, so only in development mode")
        return persona

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite+aiosqlite:///{self.data_dir / 'lotgraph.db'}"

    @property
    def graphiql_enabled(self) -> bool:
        return self.mode is Mode.DEVELOPMENT if self.graphiql is None else self.graphiql

    @property
    def introspection_enabled(self) -> bool:
        return self.mode is Mode.DEVELOPMENT if self.introspection is None else self.introspection

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = os.environ.get("LOTGRAPH_CONFIG")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)


ENV_PREFIX = "LOTGRAPH_"
# Read by `load_settings` and the CLI themselves rather than being settings.
NOT_SETTINGS = frozenset({"LOTGRAPH_CONFIG", "LOTGRAPH_LOG_FORMAT"})
SECRET_WORDS = ("secret", "password", "api_key", "headers")  # settings whose values are never echoed in an error
log = logging.getLogger(__name__)


def load_settings(**overrides: Any) -> Settings:
    """The settings, or a ConfigurationError naming the first wrong one as the operator wrote it: the
    environment variable if one is set, else the key of the `LOTGRAPH_CONFIG` file."""
    config_file = os.environ.get("LOTGRAPH_CONFIG")
    if config_file:
        _check_config_file(Path(config_file))
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        path = [str(part) for part in error["loc"]]
        problem = error["msg"] if error["type"] != "extra_forbidden" else "is not a setting lotgraph knows"
        if error["type"] == "enum" and "expected" in error.get("ctx", {}):
            problem = f"must be {error['ctx']['expected']}"
        if not _secret(path, error["input"]):
            problem += f" (got {error['input']!r})"
        raise ConfigurationError(_where(path, config_file), problem[:300]) from None


def _secret(path: list[str], value: Any) -> bool:
    """Whether echoing the wrong value could print a secret: a secret's own value, or a group of settings (a
    missing field's input is its whole parent, secrets and all)."""
    return isinstance(value, dict | list) or any(word in part for part in path for word in SECRET_WORDS)


def names_a_setting(variable: str) -> bool:
    """Whether an environment variable names a setting (`LOTGRAPH_SOURCES__ERP__URL`) or one lotgraph reads
    itself (`LOTGRAPH_CONFIG`); pydantic-settings silently ignores any other, e.g. `LOTGRAPH_ERP_URL`."""
    name = variable.upper()
    if name in NOT_SETTINGS:
        return True
    if not name.startswith(ENV_PREFIX):
        return False
    return _resolves(Settings, name.removeprefix(ENV_PREFIX).lower().split("__"))


def _resolves(annotation: Any, parts: list[str]) -> bool:
    """Whether `parts` is a path into `annotation`: fields of models, any key of a dict, through Optional."""
    if not parts:
        return True
    if not parts[0]:
        return False
    options = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    for option in options:
        if isinstance(option, type) and issubclass(option, BaseModel):
            field = option.model_fields.get(parts[0])
            if field is not None and _resolves(field.annotation, parts[1:]):
                return True
        elif get_origin(option) is dict and _resolves(get_args(option)[1], parts[1:]):
            return True
    return False


def warn_about_unknown_variables(environ: dict[str, str] | os._Environ[str] = os.environ) -> list[str]:
    """Log each `LOTGRAPH_*` variable that names no setting (a typo is otherwise silently ignored)."""
    unknown = sorted(name for name in environ if name.upper().startswith(ENV_PREFIX) and not names_a_setting(name))
    for name in unknown:
        log.warning("%s is not a setting lotgraph knows: ignored", name)
    return unknown


def _check_config_file(path: Path) -> None:
    try:
        content = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigurationError("LOTGRAPH_CONFIG", f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError("LOTGRAPH_CONFIG", f"{path} is not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(content, dict | None):
        raise ConfigurationError("LOTGRAPH_CONFIG", f"{path} must hold a mapping of settings")


def _where(path: list[str], config_file: str | None) -> str:
    """The variable the wrong value came from (`LOTGRAPH_SOURCES__WMS__VERSION`; a value inside a JSON-valued
    variable after it: `LOTGRAPH_NOTIFICATIONS__TARGETS__PAGER__EVENTS[0].type`), else the config file's key."""
    present = {name.upper() for name in os.environ}
    for cut in range(len(path), 0, -1):
        variable = ENV_PREFIX + "__".join(part.upper() for part in path[:cut])
        if variable in present:
            return variable + "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in path[cut:])
    if config_file:
        return f"{'.'.join(path)} in {config_file}"
    return ENV_PREFIX + "__".join(part.upper() for part in path)


def local_sources(first_port: int) -> Sources:
    """The four simulators on loopback from `first_port` on (ERP, QMS, WMS, MES)."""
    return Sources.model_validate(_loopback_defaults(first_port))
