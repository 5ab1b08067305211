"""GraphQL over Server-Sent Events (the graphql-sse protocol, distinct connections mode).

`POST /graphql` with `Accept: text/event-stream`: each result is an `event: next` whose data is the GraphQL
response, and `event: complete` ends the stream. The request authenticates like any other (the
`Authorization` header) before this runs; comment pings every `heartbeat_seconds` keep idle streams open
through proxies. A client that goes away ends its subscription at once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from strawberry.http import GraphQLRequestData

if TYPE_CHECKING:
    from gateway.endpoint import GraphQLEndpoint


def wants_event_stream(request: Request) -> bool:
    return request.method == "POST" and "text/event-stream" in request.headers.get("accept", "")


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": "BAD_REQUEST"}}]}, status_code=400)


async def _request_data(endpoint: GraphQLEndpoint, request: Request) -> GraphQLRequestData | str:
    """The GraphQL request in the body, or what is wrong with it."""
    try:
        body = endpoint.decode_json(await request.body())
    except ValueError:
        return "the body must be a JSON GraphQL request"
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    query, variables = body.get("query"), body.get("variables")
    if not (query is None or isinstance(query, str)) or not (variables is None or isinstance(variables, dict)):
        return "'query' must be a string and 'variables' an object"
    return GraphQLRequestData(query, variables, body.get("operationName"), body.get("extensions"))


async def event_stream(endpoint: GraphQLEndpoint, request: Request) -> Response:
    data = await _request_data(endpoint, request)
    if isinstance(data, str):
        return _bad_request(data)
    data = endpoint.trusted.resolve(data)
    context = await endpoint.get_context(request, Response())
    results = await endpoint.schema.stream(
        data.query, variable_values=data.variables, context_value=context, operation_name=data.operation_name
    )

    async def messages() -> AsyncIterator[dict[str, Any]]:
        async with aclosing(results):
            async for result in results:
                yield {"event": "next", "data": json.dumps(await endpoint.process_result(request, result))}
        yield {"event": "complete", "data": ""}

    return EventSourceResponse(messages(), ping=endpoint.settings.events.heartbeat_seconds)
