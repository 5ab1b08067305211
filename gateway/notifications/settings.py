"""Notification settings (`LOTGRAPH_NOTIFICATIONS__...`): the outbound webhook targets and how deliveries retry.

Targets are keyed by name (`LOTGRAPH_NOTIFICATIONS__TARGETS__SUPERVISORS__URL=https://...`), as subgraphs are: the
name is the delivery's `target`, the metrics' label and what an exception entry says, never the URL (a chat
webhook's URL is itself a secret)."""

from __future__ import annotations

import base64

from pydantic import BaseModel, Field, HttpUrl, SecretStr, field_validator, model_validator

from gateway.auth import is_loopback
from gateway.events.envelope import Event
from gateway.events.settings import Trigger

ALL_PLANTS = "*"
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64  # what Standard Webhooks issues


class TargetSettings(BaseModel):
    """One receiver: where notifications go, the Standard Webhooks secret they are signed with, which events
    (`events`: type and optional `passed`, as containment's triggers) of which plants."""

    url: HttpUrl = Field(description="Where deliveries are POSTed; https unless on loopback.")
    secret: SecretStr = Field(description="The target's Standard Webhooks secret (whsec_ and base64).")
    events: list[Trigger] = Field(min_length=1, description="The events this target is notified of.")
    plants: list[str] = Field(default_factory=lambda: [ALL_PLANTS], min_length=1, description="`*`: every plant.")

    @field_validator("url")
    @classmethod
    def _https_unless_loopback(cls, url: HttpUrl) -> HttpUrl:
        """Notifications carry quality data: never in clear text across a network."""
        if url.scheme != "https" and not is_loopback(url.host or ""):
            raise ValueError("must use https (plain http only on loopback)")
        return url

    @field_validator("secret")
    @classmethod
    def _signing_key(cls, secret: SecretStr) -> SecretStr:
        """A key Standard Webhooks would issue (24 to 64 random bytes), so a typo or a placeholder never signs."""
        value = secret.get_secret_value()
        try:
            key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
        except ValueError:  # binascii's error
            key = b""
        if not value.startswith("whsec_") or not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
            raise ValueError(f"must be a Standard Webhooks secret: whsec_ and {MIN_KEY_BYTES} to {MAX_KEY_BYTES} "
                             "bytes in base64")  # fmt: skip
        return secret

    def wants(self, event: Event) -> bool:
        in_plant = ALL_PLANTS in self.plants or event.plant in self.plants
        return in_plant and any(wanted.matches(event) for wanted in self.events)


class NotificationSettings(BaseModel):
    targets: dict[str, TargetSettings] = Field(default_factory=dict, description="Outbound webhook targets by name.")
    attempts: int = Field(default=8, ge=1, description="Tries of one delivery before it is parked.")
    backoff_seconds: float = Field(default=2.0, gt=0, description="Wait before the second try; doubles after each.")
    max_backoff_seconds: float = Field(default=600.0, gt=0, description="Longest wait between two tries.")
    timeout_seconds: float = Field(default=10.0, gt=0, description="How long a target may take to answer.")
    poll_seconds: float = Field(default=2.0, gt=0, description="How often the outbox is looked at unprompted.")

    @model_validator(mode="after")
    def _backoff_in_order(self) -> NotificationSettings:
        if self.max_backoff_seconds < self.backoff_seconds:
            raise ValueError("max_backoff_seconds must be at least backoff_seconds")
        return self
