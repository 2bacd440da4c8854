"""JSON Schemas of the extraction presets (receipt, invoice, form)."""

from __future__ import annotations

from typing import Any

_DATE = {"type": "string", "description": "the date as written, preferably YYYY-MM-DD"}

PRESETS: dict[str, dict[str, Any]] = {
    "receipt": {
        "title": "receipt", "type": "object", "additionalProperties": False,
        "required": ["merchant", "date", "items", "total"],
        "properties": {
            "merchant": {"type": "string"},
            "date": _DATE,
            "items": {"type": "array", "items": {
                "type": "object", "additionalProperties": False, "required": ["name", "price"],
                "properties": {"name": {"type": "string"}, "price": {"type": "number"}}}},
            "total": {"type": "number"},
        },
    },
    "invoice": {
        "title": "invoice", "type": "object", "additionalProperties": False,
        "required": ["vendor", "invoice_number", "date", "customer", "total"],
        "properties": {
            "vendor": {"type": "string"}, "invoice_number": {"type": "string"}, "date": _DATE,
            "customer": {"type": "string"}, "total": {"type": "number"},
        },
    },
    "form": {
        "title": "form", "type": "object", "additionalProperties": {"type": "string"},
        "required": [],
        "properties": {"name": {"type": "string"}, "email": {"type": "string"}, "phone": {"type": "string"},
                       "date": _DATE, "address": {"type": "string"}},
    },
}
