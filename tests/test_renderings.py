"""A subscription event is executed once per selection, whoever subscribed: `schema/renderings.py`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import strawberry

from schema.renderings import Rendered, RenderOnce, Shared, next_frames, unexecuted

EXECUTED: list[str] = []  # the `lot` of each event object, once per execution of the field


@strawberry.type
class Fresh:
    """Not `Shared`: executed for each subscriber, as before."""

    name: str

    @strawberry.field
    def lot(self) -> str:
        EXECUTED.append(self.name)
        return f"lot of {self.name}"


@strawberry.type
class Happened(Fresh, Shared):
    pass


@strawberry.type
class Query:
    ok: bool = True


def _shared(name: str) -> Happened:
    event = Happened(name=name)
    event.renderings = {}
    return event


SHARED = [_shared("first"), _shared("second")]


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def happened(self, tag: str = "") -> AsyncGenerator[Happened, None]:
        for event in SHARED:
            yield event

    @strawberry.subscription
    async def unexecuted(self, info: strawberry.Info) -> AsyncGenerator[Happened, None]:
        """As lotgraph's subscriptions: events the transport sent itself are not yielded."""

        async def events() -> AsyncIterator[Happened]:
            for event in SHARED:
                yield event

        async for event in unexecuted(info, events(), lambda event: event):
            yield event

    @strawberry.subscription
    async def fresh(self) -> AsyncGenerator[Fresh, None]:
        for name in ("first", "second"):
            yield Fresh(name=name)


schema = strawberry.Schema(query=Query, subscription=Subscription, execution_context_class=RenderOnce)


async def _results(query: str, variables: dict[str, Any] | None = None) -> list[Any]:
    stream = await schema.subscribe(query, variable_values=variables)
    return [result async for result in stream]  # type: ignore[union-attr]


def _data(results: list[Any]) -> list[Any]:
    return [result.data for result in results]


async def test_subscribers_of_one_selection_share_one_execution_and_its_json() -> None:
    EXECUTED.clear()
    for event in SHARED:
        event.renderings.clear()
    query = "subscription { happened { lot name } }"
    one, two, three = await asyncio.gather(*(_results(query) for _ in range(3)))
    assert (
        _data(one)
        == _data(two)
        == _data(three)
        == [
            {"happened": {"lot": "lot of first", "name": "first"}},
            {"happened": {"lot": "lot of second", "name": "second"}},
        ]
    )
    assert EXECUTED == ["first", "second"]  # once per event, not once per subscriber
    shared = one[0].data
    assert isinstance(shared, Rendered) and two[0].data is shared
    assert json.loads(shared.encoded(json.dumps)) == shared
    assert shared.encoded(lambda _: "not called again") == shared.encoded(json.dumps)


async def test_each_selection_and_its_variables_are_executed_for_themselves() -> None:
    EXECUTED.clear()
    for event in SHARED:
        event.renderings.clear()
    named = await _results("subscription { happened { name } }")
    aliased = await _results("subscription { happened { where: lot } }")
    tagged = "subscription($tag: String!) { happened(tag: $tag) { lot } }"
    a, b = await _results(tagged, {"tag": "a"}), await _results(tagged, {"tag": "b"})
    assert _data(named)[0] == {"happened": {"name": "first"}}
    assert _data(aliased)[0] == {"happened": {"where": "lot of first"}}
    assert _data(a) == _data(b) == [{"happened": {"lot": "lot of first"}}, {"happened": {"lot": "lot of second"}}]
    assert EXECUTED == ["first", "second"] * 3  # `named` selects no `lot`; each other selection runs it once


async def test_events_not_shared_are_executed_for_every_subscriber() -> None:
    EXECUTED.clear()
    one, two = await asyncio.gather(*(_results("subscription { fresh { lot } }") for _ in range(2)))
    assert _data(one) == _data(two)
    assert sorted(EXECUTED) == ["first", "first", "second", "second"]
    assert not isinstance(one[0].data, Rendered)


async def test_a_transport_that_sends_frames_gets_kept_renderings_and_only_the_rest_is_executed() -> None:
    """The graphql-transport-ws handler sets `next_frames` for each operation: a subscriber whose selection another
    already rendered gets that rendering straight to its transport, and nothing of it is executed again."""
    EXECUTED.clear()
    for event in SHARED:
        event.renderings.clear()
    sent: list[Rendered] = []

    async def send(rendered: Rendered) -> None:
        sent.append(rendered)

    token = next_frames.set(send)
    try:
        first = await _results("subscription { unexecuted { lot } }")
        again = await _results("subscription { unexecuted { lot } }")
        other = await _results("subscription { unexecuted { name } }")
    finally:
        next_frames.reset(token)
    assert _data(first) == [{"unexecuted": {"lot": "lot of first"}}, {"unexecuted": {"lot": "lot of second"}}]
    assert again == []  # both events went to the transport, none through strawberry
    assert sent == _data(first) and all(a is b for a, b in zip(sent, _data(first), strict=True))
    assert _data(other) == [{"unexecuted": {"name": "first"}}, {"unexecuted": {"name": "second"}}]
    assert EXECUTED == ["first", "second"]  # the `lot` selection ran once per event


async def test_without_a_transport_that_sends_frames_every_event_is_yielded() -> None:
    """SSE, and graphql-transport-ws's older sibling, send only what strawberry yields: every event reaches them."""
    for event in SHARED:
        event.renderings.clear()
    await _results("subscription { unexecuted { lot } }")
    again = await _results("subscription { unexecuted { lot } }")
    assert _data(again) == [{"unexecuted": {"lot": "lot of first"}}, {"unexecuted": {"lot": "lot of second"}}]
