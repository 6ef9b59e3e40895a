"""The ops API's OpenAPI 3.1 document (served at ``/api/openapi.json``).

Theory of operation: one function builds the document as plain data; it describes every
route :mod:`bridge.ops.api` serves, with JSON Schemas (2020-12, the dialect of OpenAPI 3.1)
for every JSON body, error bodies included. The record schema follows DESIGN section 4:
its named fields are required, further fields are allowed (records gain fields, never lose
or rename them). A test validates real responses of a running bridge against it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_NULLABLE_STR: dict[str, Any] = {"type": ["string", "null"]}
_NULLABLE_BOOL: dict[str, Any] = {"type": ["boolean", "null"]}
_TIME: dict[str, Any] = {"type": ["string", "null"], "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: list[str], properties: dict[str, Any], *, extra: bool = True) -> Any:
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": extra,
    }


def _schemas() -> dict[str, Any]:
    signaling = _object(
        ["transport", "tls_version", "cipher"],
        {
            "transport": {"type": "string", "enum": ["wss", "tls"]},
            "tls_version": _NULLABLE_STR,
            "cipher": _NULLABLE_STR,
            "peer_certificate_verified": _NULLABLE_BOOL,
            "peer_certificate_subject": _NULLABLE_STR,
            "mutual_tls": _NULLABLE_BOOL,
        },
    )
    media = _object(
        ["protocol"],
        {
            "protocol": {"type": "string", "enum": ["DTLS-SRTP", "SRTP"]},
            "dtls_version": _NULLABLE_STR,
            "dtls_cipher": _NULLABLE_STR,
            "srtp_profile": _NULLABLE_STR,
            "remote_fingerprint": _NULLABLE_STR,
            "fingerprint_matches_signaling": _NULLABLE_BOOL,
            "keying": {"type": "string", "enum": ["SDES"]},
            "crypto_suite": _NULLABLE_STR,
            "keys_fresh": _NULLABLE_BOOL,
            "codec": _NULLABLE_STR,
        },
    )
    leg = _object(
        ["leg", "encrypted"],
        {
            "leg": {"type": "string", "enum": ["webrtc", "gateway", "pstn"]},
            "encrypted": _NULLABLE_BOOL,
            "peer": _NULLABLE_STR,
            "signaling": _ref("Signaling"),
            "media": _ref("Media"),
            "status": {"type": "string", "enum": ["carrier-dependent"]},
            "caveat": {"type": "string"},
        },
    )
    refusal = _object(
        ["reason", "detail", "at"],
        {"reason": {"type": "string"}, "detail": {"type": "string"}, "at": _TIME},
    )
    record = _object(
        [
            "call_id",
            "direction",
            "from",
            "to",
            "started_at",
            "answered_at",
            "ended_at",
            "end_reason",
            "legs",
            "end_to_end_encrypted",
            "caveats",
            "policy_refusals",
        ],
        {
            "call_id": {"type": "string"},
            "direction": {"type": "string", "enum": ["inbound", "outbound"]},
            "from": _NULLABLE_STR,
            "to": _NULLABLE_STR,
            "started_at": _TIME,
            "answered_at": _TIME,
            "ended_at": _TIME,
            "end_reason": _NULLABLE_STR,
            "sip_status": {"type": ["integer", "null"]},
            "user": _NULLABLE_STR,
            "trunk": _NULLABLE_STR,
            "legs": {"type": "array", "items": _ref("Leg")},
            "end_to_end_encrypted": {"type": "boolean"},
            "caveats": {"type": "array", "items": {"type": "string"}},
            "policy_refusals": {"type": "array", "items": _ref("PolicyRefusal")},
        },
    )
    update = _object(
        ["call_id", "seq", "at", "event", "detail", "final"],
        {
            "call_id": {"type": "string"},
            "seq": {"type": "integer", "minimum": 1},
            "at": {"type": "number", "description": "seconds since the epoch"},
            "event": {"type": "string"},
            "detail": {
                "type": "object",
                "additionalProperties": {
                    "type": ["string", "integer", "number", "boolean", "null"]
                },
            },
            "final": {"type": "boolean"},
        },
    )
    queue_health = {
        "type": ["object", "null"],
        "required": ["queue_depth", "queue_capacity", "dropped"],
        "properties": {
            "state": {"type": "string", "enum": ["ok", "degraded", "down"]},
            "connected": {"type": "boolean"},
            "queue_depth": {"type": "integer", "minimum": 0},
            "queue_capacity": {"type": "integer", "minimum": 0},
            "dropped": {"type": "integer", "minimum": 0},
        },
        "additionalProperties": True,
    }
    return {
        "Signaling": signaling,
        "Media": media,
        "Leg": leg,
        "PolicyRefusal": refusal,
        "Record": record,
        "CallUpdate": update,
        "CallList": _object(
            ["calls"],
            {
                "calls": {"type": "array", "items": _ref("Record")},
                "partial": {
                    "type": "boolean",
                    "description": "true when the store could not be read: live and recent "
                    "calls only",
                },
            },
            extra=False,
        ),
        "EventList": _object(
            ["events"], {"events": {"type": "array", "items": _ref("CallUpdate")}}, extra=False
        ),
        "StreamMessage": _object(
            ["update", "record"], {"update": _ref("CallUpdate"), "record": _ref("Record")}
        ),
        "Error": _object(["error"], {"error": {"type": "string"}}, extra=False),
        "Readiness": _object(
            ["ready", "trunks", "store", "broker"],
            {
                "ready": {"type": "boolean"},
                "trunks": {
                    "type": "object",
                    "additionalProperties": {"type": "string", "enum": ["unknown", "up", "down"]},
                },
                "store": queue_health,
                "broker": queue_health,
            },
            extra=False,
        ),
    }


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema)}},
    }


_ERRORS = {
    "401": {
        "description": "missing or wrong bearer token",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
        "content": {"application/json": {"schema": _ref("Error")}},
    },
    "429": {
        "description": "too many requests for this token (or, without one, this address)",
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
        "content": {"application/json": {"schema": _ref("Error")}},
    },
}
_CALL_ID = {"name": "call_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _paths() -> dict[str, Any]:
    list_params = [
        {"name": "active", "in": "query", "schema": {"type": "string", "enum": ["true", "false"]}},
        {
            "name": "since",
            "in": "query",
            "description": "ISO 8601 time with a time zone; calls started at or after it",
            "schema": {"type": "string", "format": "date-time"},
        },
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
        },
    ]
    public: list[dict[str, list[str]]] = []
    return {
        "/api/calls": {
            "get": {
                "summary": "Call records, newest first (active ones live)",
                "parameters": list_params,
                "responses": {
                    "200": _json("CallList", "the records"),
                    "400": _json("Error", "a malformed query parameter"),
                    **_ERRORS,
                },
            }
        },
        "/api/calls/{call_id}": {
            "get": {
                "summary": "One call's record",
                "parameters": [_CALL_ID],
                "responses": {
                    "200": _json("Record", "the record"),
                    "404": _json("Error", "no such call"),
                    **_ERRORS,
                },
            }
        },
        "/api/calls/{call_id}/events": {
            "get": {
                "summary": "One call's updates in order",
                "parameters": [_CALL_ID],
                "responses": {
                    "200": _json("EventList", "the updates"),
                    "404": _json("Error", "no such call"),
                    **_ERRORS,
                },
            }
        },
        "/api/stream": {
            "get": {
                "summary": "Live call updates as Server-Sent Events",
                "description": "Each message is `event: call` with `data:` a StreamMessage "
                "(JSON); a `: keep-alive` comment is sent every 15 s of silence.",
                "responses": {
                    "200": {
                        "description": "the event stream",
                        "content": {
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    "503": _json("Error", "too many stream clients, or shutting down"),
                    **_ERRORS,
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "text exposition format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_ERRORS,
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "security": public,
                "responses": {
                    "200": {
                        "description": "the process serves requests",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: a trunk is up and the store is not down",
                "security": public,
                "responses": {
                    "200": _json("Readiness", "ready"),
                    "503": _json("Readiness", "not ready"),
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "security": public,
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }


def openapi_document(version: str = "0") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the ops API."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pstn-bridge ops API",
            "version": version,
            "description": "Call security records (DESIGN section 4), their updates, the "
            "live feed, health and metrics. Every call's PSTN leg is carrier-dependent.",
        },
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(),
        },
    }
