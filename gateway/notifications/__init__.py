"""Outbound notifications: configured webhook targets told of plant events, signed the Standard Webhooks way,
delivered from a durable outbox with retries, and parked in the exception queue when a target keeps failing.

`settings.py` (targets and retry budget), `message.py` (the body), `sender.py` (one signed try), `worker.py`
(claims, retries, parks), `service.py` (`Notifications`: the event reaction that fills the outbox, and what the
exception queue's retry and discard do); the outbox itself is `gateway/store/outbox.py`.
"""

from gateway.notifications.service import Notifications
from gateway.notifications.settings import NotificationSettings, TargetSettings

__all__ = ["NotificationSettings", "Notifications", "TargetSettings"]
