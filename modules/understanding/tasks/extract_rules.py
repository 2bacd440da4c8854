"""The offline extraction default: OCR rows turned into fields by simple layout rules.

OCR of printed Latin text often drops spaces ("OakStreetDeli", "Billto:FatimaNoor"), so labels are compared
without spaces and case, and values get their spaces back where a lower-case letter meets a capital.
Rules: ``Label: value`` rows (forms, and any user schema whose properties are named like the labels), a date
pattern, the last amount on a ``total`` row, and for receipts the ``name  price`` rows between the header
and the total.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

_AMOUNT = re.compile(r"(-?\d{1,3}(?:[,\s]\d{3})*(?:[.,]\d{2})|-?\d+(?:[.,]\d{2}))\s*$")
_DATE = re.compile(r"(\d{4}-\d{2}-\d{2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4})")
_TOTAL_SKIP = ("subtotal", "tax", "vat", "change", "cash", "tip")


def respace(text: str) -> str:
    """Spaces put back where OCR dropped them: between a lower-case letter and a capital, and after ``:``."""
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)
    text = re.sub(r":(?=\S)", ": ", text)
    return re.sub(r"\s+", " ", text).strip()


def compact(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def amount(text: str) -> float | None:
    match = _AMOUNT.search(text.strip())
    if not match:
        return None
    raw = re.sub(r"[\s,](?=\d{3}\b)", "", match.group(1)).replace(",", ".")
    try:
        return round(float(raw), 2)
    except ValueError:
        return None


def label_values(rows: Sequence[str]) -> list[tuple[str, str]]:
    """(compact label, value) of each ``Label: value`` row."""
    pairs = []
    for row in rows:
        label, sep, value = row.partition(":")
        if sep and compact(label) and value.strip():
            pairs.append((compact(label), respace(value)))
    return pairs


def find_date(rows: Sequence[str]) -> str | None:
    for row in rows:
        match = _DATE.search(row.replace(" ", ""))
        if match:
            return match.group(1)
    return None


def _total_row(rows: Sequence[str]) -> int | None:
    found = None
    for index, row in enumerate(rows):
        key = compact(row)
        if "total" in key and not any(skip in key for skip in _TOTAL_SKIP) and amount(row) is not None:
            found = index
    return found


def receipt(rows: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    total_index = _total_row(rows)
    header = next((i for i, row in enumerate(rows) if compact(row) and amount(row) is None and not _DATE.search(
        row.replace(" ", ""))), None)
    if header is not None:
        out["merchant"] = respace(rows[header])
    date = find_date(rows)
    if date:
        out["date"] = date
    end = total_index if total_index is not None else len(rows)
    items = []
    for index in range(0 if header is None else header + 1, end):
        row = rows[index]
        price = amount(row)
        name = respace(_AMOUNT.sub("", row.strip()))
        if price is None or not re.search(r"[A-Za-z]", name) or _DATE.search(row.replace(" ", "")):
            continue
        if any(skip in compact(name) for skip in (*_TOTAL_SKIP, "total")):
            continue
        items.append({"name": name, "price": price})
    out["items"] = items
    if total_index is not None:
        out["total"] = amount(rows[total_index])
    return out


def invoice(rows: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rows:
        out["vendor"] = respace(rows[0])
    for label, value in label_values(rows):
        if "invoice" in label and ("no" in label or "number" in label) or label in ("invoice", "invoiceid"):
            out["invoice_number"] = value.replace(" ", "")
        elif label in ("billto", "customer", "client", "soldto"):
            out["customer"] = value
    if "invoice_number" not in out:
        match = next((re.search(r"\b(INV-?\d+)\b", row.replace(" ", "")) for row in rows
                      if re.search(r"INV-?\d+", row.replace(" ", ""))), None)
        if match:
            out["invoice_number"] = match.group(1)
    date = find_date(rows)
    if date:
        out["date"] = date
    total_index = _total_row(rows)
    if total_index is not None:
        out["total"] = amount(rows[total_index])
    return out


def from_labels(rows: Sequence[str], schema: Mapping[str, Any], keep_other: bool = False) -> dict[str, Any]:
    """Fields of ``schema`` (an object schema) filled from ``Label: value`` rows by property name."""
    properties: Mapping[str, Any] = schema.get("properties") or {}
    by_label = {compact(name): name for name in properties}
    out: dict[str, Any] = {}
    for label, value in label_values(rows):
        name = by_label.get(label)
        if name is None:
            if keep_other:
                out.setdefault(re.sub(r"[^a-z0-9]+", "_", label), value)
            continue
        spec = properties[name]
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind in ("number", "integer"):
            number = amount(value) if amount(value) is not None else _plain_number(value)
            if number is None:
                continue
            out[name] = int(number) if kind == "integer" and float(number).is_integer() else number
        elif kind == "email" or name.lower() in ("email", "e_mail"):
            out[name] = value.replace(" ", "")
        else:
            out[name] = value.replace(" ", "") if "@" in value else value
    return out


def _plain_number(text: str) -> float | None:
    match = re.search(r"-?\d+(?:\.\d+)?", text.replace(" ", ""))
    return float(match.group(0)) if match else None


def extract(rows: Sequence[str], preset: str | None, schema: Mapping[str, Any]) -> dict[str, Any]:
    if preset == "receipt":
        return receipt(rows)
    if preset == "invoice":
        return invoice(rows)
    return from_labels(rows, schema, keep_other=preset == "form")
