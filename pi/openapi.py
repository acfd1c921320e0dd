"""OpenAPI 3.1 description of the Pi's API (kept true by tests/test_openapi.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from handshake import __version__

_ERROR = {"description": "error", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/Error"}}}}
_SIGNED: list[dict[str, list[str]]] = [{"EdgePair": []}]


def _json(schema: dict[str, Any], description: str = "ok") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _ERROR for code in codes}


# The app's own copy of the document: modules that add routes add their paths to it.
OPENAPI = web.AppKey("openapi", dict[str, Any])

PI_OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "edgepair Pi API", "version": __version__,
             "description": "Handshake API of the Pi's api daemon. Signed requests carry "
                            "`Authorization: EdgePair ts=<unix>, nonce=<hex>, sig=<hex>`, an "
                            "HMAC-SHA256 over `METHOD\\nPATH?QUERY\\nts\\nnonce\\n"
                            "sha256hex(body)`."},
    "components": {
        "securitySchemes": {"EdgePair": {"type": "apiKey", "in": "header",
                                         "name": "Authorization"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}}}}},
            "GoingOffline": {"type": "object", "required": ["reason"],
                             "additionalProperties": False, "properties": {
                                 "reason": {"enum": ["shutdown", "suspend", "reboot"]},
                                 "wake_at": {"type": ["string", "null"], "format": "date-time"},
                                 "snapshot": {"type": ["object", "null"],
                                              "description": "null: no snapshot; nested at most 32 levels"}}},
            "ComingOnline": {"type": "object", "additionalProperties": False, "properties": {
                "boot_id": {"type": ["string", "null"]}}},
            "Wake": {"type": "object", "additionalProperties": False, "properties": {
                "source": {"enum": ["api", "button", "schedule", "host", "inbox", "dashboard",
                                    "cli"]}}},
            "HostStatus": {"type": "object", "required": ["schema", "state", "since"],
                           "properties": {
                               "schema": {"const": "edgepair.host/1"},
                               "state": {"enum": ["online", "going_offline", "offline",
                                                  "waking", "unreachable"]},
                               "since": {"type": "string", "format": "date-time"}}},
        },
    },
    "paths": {
        "/api/v1/health": {"get": {"summary": "Liveness of the api daemon", "responses": {
            "200": _json({"type": "object", "required": ["ok"], "properties": {
                "ok": {"type": "boolean"}, "version": {"type": "string"},
                "uptime_s": {"type": "number"}}})}}},
        "/api/v1/status": {"get": {"summary": "The host's state (what host.json holds)",
                                   "responses": {"200": _json(
                                       {"$ref": "#/components/schemas/HostStatus"})}}},
        "/api/v1/host/going-offline": {"post": {
            "summary": "The host is about to sleep; DNS switches to the Pi before the ack",
            "security": _SIGNED,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/GoingOffline"}}}},
            "responses": {"200": _json({"type": "object", "required": ["ack"], "properties": {
                "ack": {"const": True},
                "state": {"type": "string"},
                "dns_target": {"enum": ["host", "pi"]},
                "wake_at": {"type": ["string", "null"], "format": "date-time"},
                "sanitised": {"type": "array", "items": {"type": "string"}, "description":
                              "present when the snapshot held text UTF-8 cannot store "
                              "(a lone surrogate): where it was replaced by U+FFFD or a "
                              "key dropped; or when snapshot.json could not be written (a "
                              "full card): the transition happened regardless"}}}),
                          **_errors(400, 401, 413)}}},
        "/api/v1/host/coming-online": {"post": {
            "summary": "The host is up; DNS switches back to it", "security": _SIGNED,
            "requestBody": {"content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/ComingOnline"}}}},
            "responses": {"200": _json({"type": "object", "required": ["ack", "inbox_pending"]}),
                          **_errors(400, 401, 413)}}},
        "/api/v1/wake": {"post": {
            "summary": "Send a magic packet to the host (signed, or anonymous and "
                       "rate-limited when allow_anonymous_wake)",
            "security": [*_SIGNED, {}],
            "requestBody": {"content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/Wake"}}}},
            "responses": {"200": _json({"type": "object"}, "host already online"),
                          "202": _json({"type": "object", "required": ["sent", "state"]},
                                       "accepted"),
                          **_errors(400, 401, 413, 429)}}},
        "/api/v1/openapi.json": {"get": {"summary": "This document",
                                         "responses": {"200": _json({"type": "object"})}}},
        "/data/{name}": {"get": {
            "summary": "A public JSON file (host.json, snapshot.json, pi.json, …)",
            "parameters": [{"name": "name", "in": "path", "required": True, "example": "host.json",
                            "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*\\.json$"}}],
            "responses": {"200": _json({"type": "object"}), **_errors(404)}}},
        "/metrics": {"get": {
            "summary": "Prometheus metrics (text format 0.0.4) built from the public files; "
                       "a stale file exports only its age", "responses": {
                "200": {"description": "Prometheus text exposition",
                        "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/": {"get": {"summary": "The dashboard; without one ([api] frontend_dir), a small "
                                 "page linking the status and this document", "responses": {
            "200": {"description": "HTML", "content": {"text/html": {}}}}}},
    },
}
