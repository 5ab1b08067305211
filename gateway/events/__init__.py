"""Plant events in, subscriptions out.

ingest (`webhooks.py`, `mqtt.py`, `polling.py`) -> normalize (`normalize.py`) -> bus (`bus.py`: in memory or
Redis Streams, with cursors, retention and dedupe) -> on every replica: cache invalidation and fan-out
(`fanout.py`) -> per-subscriber authorization and filters (`resolvers/subscriptions.py`) -> client.
`containment.py` turns chosen events into governed holds; `hub.py` wires it together for one process.
"""
