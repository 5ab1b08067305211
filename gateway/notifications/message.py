"""What a notification says: the Standard Webhooks body of one plant event.

`{"type", "timestamp", "data"}` as the Standard Webhooks specification lays a payload out: `type` is the event's
type as targets filter on it (`InspectionCompleted`), `timestamp` when it happened, `data` the canonical event
with the fields (and camelCase names) a `qualityEvents` subscriber receives, bar the bus cursor.
"""

from __future__ import annotations

from typing import Any

from gateway.events.envelope import Event


def body(event: Event) -> dict[str, Any]:
    lot = event.lot
    data = {
        "id": event.id, "type": event.type.value, "source": event.source, "plant": event.plant,
        "lotId": lot and lot.id, "material": lot and lot.material, "supplier": lot and lot.supplier,
        "occurredAt": event.occurred.isoformat(), "ingestedAt": event.ingested.isoformat(),
        "correlationId": event.correlation_id, "schemaVersion": event.schema_version, "payload": event.payload,
    }  # fmt: skip
    return {"type": event.type.value, "timestamp": event.occurred.isoformat(), "data": data}
