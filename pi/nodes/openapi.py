"""The node daemon's OpenAPI document (served at /api/v1/nodes/openapi.json)."""

from __future__ import annotations

from typing import Any

_ERROR = {"description": "JSON error", "content": {"application/json": {"schema": {
    "type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}}}}
_SIGNED: list[dict[str, list[str]]] = [{"edgepair": []}]


def _post(summary: str, request: dict[str, Any], answer: dict[str, Any], *,
          signed: bool = True, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": answer}}},
        "400": _ERROR, "413": _ERROR}
    if signed:
        responses["401"] = _ERROR
    responses.update(extra or {})
    op: dict[str, Any] = {"summary": summary, "requestBody": {"required": True, "content": {
        "application/json": {"schema": request}}}, "responses": responses}
    if signed:
        op["security"] = _SIGNED
    return {"post": op}


_HWID = {"name": "hwid", "in": "path", "required": True, "schema": {"type": "string"}}
_READING = {"type": "object", "required": ["value"], "properties": {
    "value": {"type": ["number", "boolean"]}, "unit": {"type": ["string", "null"]}}}

NODES_OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "edgepair node daemon", "version": "1"},
    "components": {"securitySchemes": {"edgepair": {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": "EdgePair ts=<unix>, nonce=<hex>, sig=<hex>: HMAC-SHA256 with the "
                       "node's own key (admin: the Pi's handshake key, loopback only)"}}},
    "paths": {
        "/api/v1/nodes/health": {"get": {"summary": "liveness", "responses": {
            "200": {"description": "OK"}}}},
        "/api/v1/nodes/hello": _post(
            "an unpaired node introduces itself (open, rate-limited per client)",
            {"type": "object", "required": ["hwid", "firmware", "capabilities", "proof"],
             "properties": {"hwid": {"type": "string"}, "firmware": {"type": "string"},
                            "capabilities": {"type": "array", "items": {"type": "string"}},
                            "limits": {"type": "object"},
                            "proof": {"type": "string", "description":
                                      "hex HMAC-SHA256(pairing code, 'hello:' + hwid)"}}},
            {"type": "object", "properties": {
                "state": {"enum": ["pending", "approved"]}, "now": {"type": "number"},
                "poll_s": {"type": "number"},
                "key": {"type": "string", "description":
                        "approved: node key XOR HMAC-SHA256(code, 'key:' + hwid), hex"}}},
            signed=False, extra={"429": _ERROR}),
        "/api/v1/nodes/{hwid}/poll": {**_post(
            "jobs due for this node", {"type": "object", "properties": {
                "running": {"type": "array", "items": {"type": "string"}}}},
            {"type": "object", "properties": {"now": {"type": "number"}, "jobs": {
                "type": "array", "items": {"type": "object", "required": ["id", "capability"],
                                           "properties": {"id": {"type": "string"},
                                                          "capability": {"type": "string"},
                                                          "params": {"type": "object"}}}}}})},
        "/api/v1/nodes/{hwid}/report": _post(
            "readings and job results", {"type": "object", "properties": {
                "readings": {"type": "object", "additionalProperties": _READING},
                "results": {"type": "array", "items": {
                    "type": "object", "required": ["id", "status"], "properties": {
                        "id": {"type": "string"}, "status": {"enum": ["done", "failed"]},
                        "result": {}}}}}},
            {"type": "object", "properties": {"ack": {"type": "array",
                                                      "items": {"type": "string"}}}}),
    },
}
for _path in ("/api/v1/nodes/{hwid}/poll", "/api/v1/nodes/{hwid}/report"):
    NODES_OPENAPI["paths"][_path]["post"]["parameters"] = [_HWID]
