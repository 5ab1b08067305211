"""Event settings (`LOTGRAPH_EVENTS__...`): bus retention, subscriber limits, ingest sources, containment."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator

from gateway.events.envelope import PLANT_EVENTS, Event, EventType


class MqttSettings(BaseModel):
    """The plant's MQTT broker (`mqtt://host:1883`, `mqtts://...`); unset: MES events arrive as webhooks."""

    url: str | None = None
    topics: list[str] = Field(
        default_factory=lambda: ["+/+/+/+/production/#"],
        description="ISA-95 topic filters (enterprise/site/area/line/...) the gateway subscribes to, QoS 1.",
    )
    client_id: str | None = Field(
        default=None, description="Persistent session id; default: lotgraph-<host>-<port>, one per replica."
    )
    shared_group: str | None = Field(
        default="lotgraph", description="MQTT shared subscription group, so replicas split the messages."
    )


class Trigger(BaseModel):
    """Which events a reaction acts on (containment's holds, a notification target's deliveries): of this type and,
    if `passed` is set, with that inspection verdict. Only inbound plant events reach reactions, so a type no plant
    system sends would silently match nothing: refused."""

    type: EventType
    passed: bool | None = None

    @field_validator("type")
    @classmethod
    def _plant_event(cls, kind: EventType) -> EventType:
        if kind not in PLANT_EVENTS:
            raise ValueError(f"{kind.value} is the gateway's own event, never a plant's: no reaction sees it")
        return kind

    def matches(self, event: Event) -> bool:
        return event.type is self.type and (self.passed is None or event.payload.get("passed") is self.passed)


class ContainmentSettings(BaseModel):
    enabled: bool = True
    triggers: list[Trigger] = Field(
        default_factory=lambda: [
            Trigger(type=EventType.INSPECTION_COMPLETED, passed=False),
            Trigger(type=EventType.NONCONFORMANCE_OPENED),
        ]
    )
    principal: str = Field(default="svc-containment", description="The service principal the holds act as.")
    plants: list[str] = Field(default_factory=lambda: ["*"], description="Plants the service principal may hold in.")
    reason_code: str = "CONTAINMENT"


class EventSettings(BaseModel):
    retention: int = Field(default=100_000, ge=100, description="Events kept on the bus for resuming subscribers.")
    dedupe_seconds: float = Field(
        default=86_400, gt=0, description="How long an event id is remembered (on the bus, and done in the inbox)."
    )
    subscriber_queue: int = Field(default=1_000, ge=1, description="Events a subscriber may fall behind.")
    max_subscriptions: int = Field(default=10_000, ge=1, description="Live subscriptions one process accepts.")
    heartbeat_seconds: float = Field(default=15, gt=0, description="Keep-alive interval for idle SSE streams.")
    webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Standard Webhooks secret (whsec_...) per source; a source without one is refused.",
    )
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    erp_poll_seconds: float = Field(default=5.0, ge=0, description="ERP change feed polling interval; 0 = off.")
    containment: ContainmentSettings = Field(default_factory=ContainmentSettings)
    dispatch_seconds: float = Field(
        default=2.0, gt=0, description="How often the dispatcher looks in the inbox when nothing wakes it."
    )
    reaction_attempts: int = Field(
        default=10, ge=1, description="Runs of an event's reactions that fail transiently before it is parked."
    )
