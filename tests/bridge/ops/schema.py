"""A small JSON Schema (2020-12) validator for the subset the ops API's OpenAPI uses.

Keywords: ``$ref`` (local ``#/components/schemas/...``), ``type`` (a name or a list),
``enum``, ``required``, ``properties``, ``additionalProperties`` (bool or schema),
``items``, ``minimum``, ``maximum``. Any other keyword fails loudly, so the document cannot
grow a keyword this validator silently ignores.
"""

from __future__ import annotations

from typing import Any

_KNOWN = {
    "$ref",
    "type",
    "enum",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "minimum",
    "maximum",
    "format",
    "description",
    "default",
}
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


class SchemaError(AssertionError):
    """The value does not match (the message gives the JSON path)."""


def validate(value: Any, schema: dict[str, Any], document: dict[str, Any], path: str = "$") -> None:
    """Raise :class:`SchemaError` unless ``value`` matches ``schema``."""
    unknown = set(schema) - _KNOWN
    if unknown:
        raise SchemaError(f"{path}: schema keyword(s) {sorted(unknown)} not supported")
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        validate(value, document["components"]["schemas"][name], document, path)
        return
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            raise SchemaError(f"{path}: {value!r} is not of type {types}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise SchemaError(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise SchemaError(f"{path}: {value} > {schema['maximum']}")
    if isinstance(value, dict):
        _object(value, schema, document, path)
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            validate(item, schema["items"], document, f"{path}[{index}]")


def _object(
    value: dict[str, Any], schema: dict[str, Any], document: dict[str, Any], path: str
) -> None:
    for name in schema.get("required", ()):
        if name not in value:
            raise SchemaError(f"{path}: required property {name!r} missing")
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            validate(item, properties[name], document, f"{path}.{name}")
        elif extra is False:
            raise SchemaError(f"{path}: property {name!r} not allowed")
        elif isinstance(extra, dict):
            validate(item, extra, document, f"{path}.{name}")


def response_schema(document: dict[str, Any], route: str, status: int) -> dict[str, Any]:
    """The JSON schema of ``route``'s ``status`` response (a KeyError if undocumented)."""
    response = document["paths"][route]["get"]["responses"][str(status)]
    return response["content"]["application/json"]["schema"]


def check(document: dict[str, Any], route: str, status: int, body: Any) -> None:
    """``body`` of a ``status`` response of ``route`` matches the document."""
    validate(body, response_schema(document, route, status), document)
