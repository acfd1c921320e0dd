"""How the host agent's routes are registered: each with its OpenAPI operation, so the
document the agent serves stays true. The agent and the modules that add routes to it
(the inbox receiver) share this; neither imports the other for it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from handshake.http import Handler

PREFIX = "/api/v1"
# OpenAPI "security" for a route that needs an EdgePair signature.
SIGNED: list[dict[str, list[str]]] = [{"EdgePair": []}]
OPENAPI_PATHS_KEY = web.AppKey("openapi_paths", dict[str, dict[str, Any]])


def add_route(app: web.Application, method: str, path: str, handler: Handler,
              operation: dict[str, Any]) -> None:
    """Register a route together with its OpenAPI operation."""
    app.router.add_route(method, path, handler)
    responses = operation.setdefault("responses", {})
    responses.setdefault("default", json_response("Error.", ref("Error")))
    app[OPENAPI_PATHS_KEY].setdefault(path, {})[method.lower()] = operation


def ref(schema: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{schema}"}


def json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}
