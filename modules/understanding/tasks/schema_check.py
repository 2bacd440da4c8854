"""Local JSON Schema validation of model answers.

With the ``jsonschema`` package installed, its validator for the schema's draft is used. Without it, a small
validator covers the keywords extraction schemas use (type, properties, required, additionalProperties,
items, enum, const, minimum/maximum, exclusive bounds, minLength/maxLength, pattern, minItems/maxItems,
anyOf/oneOf/allOf); a schema using anything else that constrains values (``$ref``, ``not``, ``if``, ...) is
refused, so no answer is passed on as valid against a schema that was not really checked.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
_HANDLED = {"type", "properties", "required", "additionalProperties", "items", "enum", "const", "minimum", "maximum",
            "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
            "anyOf", "oneOf", "allOf",
            # annotations (no effect on validity)
            "title", "description", "default", "examples", "$schema", "$id", "$comment", "format", "deprecated",
            "readOnly", "writeOnly"}


class SchemaError(ValueError):
    """The schema itself is not usable (the message says why)."""


def has_jsonschema() -> bool:
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        return False
    return True


def check_schema(schema: Any) -> None:
    """Raise SchemaError for a schema that cannot be used to validate."""
    if not isinstance(schema, dict):
        raise SchemaError("the JSON Schema must be an object")
    if has_jsonschema():
        import jsonschema

        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise SchemaError(f"the JSON Schema is not valid: {exc.message}") from None
        return
    _check_subset(schema, "schema")


def _check_subset(schema: Any, where: str) -> None:
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise SchemaError(f"{where} must be an object")
    unknown = sorted(set(schema) - _HANDLED)
    if unknown:
        raise SchemaError(f"{where} uses {', '.join(unknown)}, which this studio validates only with the jsonschema "
                          f"package installed")
    types = schema.get("type")
    names = types if isinstance(types, list) else [types] if types is not None else []
    for name in names:
        if not isinstance(name, str) or name not in (*_TYPES, "number", "integer"):
            raise SchemaError(f"{where}: unknown type {name!r}")
    shapes = {"properties": dict, "required": list, "enum": list, "anyOf": list, "oneOf": list, "allOf": list,
              "pattern": str, "additionalProperties": (dict, bool), "items": (dict, bool)}
    for key, kind in shapes.items():
        if key in schema and not isinstance(schema[key], kind):
            raise SchemaError(f"{where}.{key} has the wrong type")
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems",
                "maxItems"):
        if key in schema and (isinstance(schema[key], bool) or not isinstance(schema[key], (int, float))):
            raise SchemaError(f"{where}.{key} must be a number")
    if not all(isinstance(name, str) for name in schema.get("required", [])):
        raise SchemaError(f"{where}.required must list property names")
    for key, sub in (schema.get("properties") or {}).items():
        _check_subset(sub, f"{where}.properties.{key}")
    if isinstance(schema.get("additionalProperties"), dict):
        _check_subset(schema["additionalProperties"], f"{where}.additionalProperties")
    if "items" in schema:
        _check_subset(schema["items"], f"{where}.items")
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema and not schema[key]:
            raise SchemaError(f"{where}.{key} must not be empty")
        for index, sub in enumerate(schema.get(key) or ()):
            _check_subset(sub, f"{where}.{key}[{index}]")
    if "pattern" in schema:
        try:
            re.compile(schema["pattern"])
        except re.error as exc:
            raise SchemaError(f"{where}.pattern is not a valid pattern: {exc}") from None


def validate(instance: Any, schema: Mapping[str, Any]) -> list[str]:
    """Every problem of ``instance`` against ``schema`` (empty: valid)."""
    if has_jsonschema():
        import jsonschema

        validator = jsonschema.validators.validator_for(schema)(schema)
        return [f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
                for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))]
    errors: list[str] = []
    _validate(instance, schema, "(root)", errors)
    return errors


def _type_ok(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def _validate(value: Any, schema: Any, where: str, errors: list[str]) -> None:
    if schema is True:
        return
    if schema is False:
        errors.append(f"{where}: no value is allowed here")
        return
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_type_ok(value, n) for n in names):
            errors.append(f"{where}: {json.dumps(value)[:60]} is not of type {' or '.join(names)}")
            return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {json.dumps(value)[:60]} is not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: must be {json.dumps(schema['const'])}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for key, bad in (("minimum", lambda v, b: v < b), ("maximum", lambda v, b: v > b),
                         ("exclusiveMinimum", lambda v, b: v <= b), ("exclusiveMaximum", lambda v, b: v >= b)):
            if key in schema and bad(value, schema[key]):
                errors.append(f"{where}: {value} breaks {key} {schema[key]}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", float("inf")):
            errors.append(f"{where}: length {len(value)} is out of bounds")
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            errors.append(f"{where}: {value!r} does not match {schema['pattern']!r}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", float("inf")):
            errors.append(f"{where}: {len(value)} items is out of bounds")
        if "items" in schema:
            for index, item in enumerate(value):
                _validate(item, schema["items"], f"{where}/{index}", errors)
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for key in schema.get("required") or ():
            if key not in value:
                errors.append(f"{where}: {key!r} is a required property")
        for key, item in value.items():
            if key in properties:
                _validate(item, properties[key], f"{where}/{key}", errors)
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}: additional property {key!r} is not allowed")
            elif isinstance(schema.get("additionalProperties"), dict):
                _validate(item, schema["additionalProperties"], f"{where}/{key}", errors)
    for key, count_ok in (("anyOf", lambda n, total: n >= 1), ("oneOf", lambda n, total: n == 1),
                          ("allOf", lambda n, total: n == total)):
        if key in schema:
            passing = sum(1 for sub in schema[key] if not _sub_errors(value, sub))
            if not count_ok(passing, len(schema[key])):
                errors.append(f"{where}: does not satisfy {key}")


def _sub_errors(value: Any, schema: Any) -> list[str]:
    errors: list[str] = []
    _validate(value, schema, "", errors)
    return errors


def parse_json_answer(text: str) -> Any:
    """The JSON value in a model's answer (a ```json fence, or the outermost {...}); ValueError if none."""
    stripped = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", stripped, re.DOTALL)
    if fence:
        stripped = fence.group(1).strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    start, end = stripped.find("{"), stripped.rfind("}")
    if start >= 0 and end > start:
        return json.loads(stripped[start:end + 1])
    raise ValueError("the answer holds no JSON object")
