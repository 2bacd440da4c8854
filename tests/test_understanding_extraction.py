"""Offline document extraction (OCR + layout rules) on synthetic receipts, invoices and forms rendered with
PIL with known fields: field accuracy (whitespace-normalised) >= 0.8 per document type, and every result
passed on as valid really is valid against its schema (checked again here). The figures go to
docs/benchmarks.md ("Image understanding")."""

from __future__ import annotations

import time

import pytest

from modules.understanding.backends.ocr import OcrEngine, rows_text
from modules.understanding.tasks import extract_rules
from modules.understanding.tasks.presets import PRESETS
from modules.understanding.tasks.schema_check import validate
from tests.helpers.synthetic_docs import degraded, field_hits, form, invoice, receipt

pytestmark = pytest.mark.slow
COUNTS = {"receipt": 8, "invoice": 4, "form": 4, "receipt (degraded)": 4}


def test_field_accuracy_and_validity_on_synthetic_documents(capsys):
    engine = OcrEngine()
    makers = {"receipt": receipt, "invoice": invoice, "form": form,
              "receipt (degraded)": lambda seed: degraded(receipt(100 + seed), seed)}
    figures = {}
    for kind, count in COUNTS.items():
        right = total = valid = 0
        started = time.perf_counter()
        for seed in range(count):
            doc = makers[kind](seed)
            preset = doc.kind
            data = extract_rules.extract(rows_text(engine.read(doc.image)), preset, PRESETS[preset])
            errors = validate(data, PRESETS[preset])
            passed = data if not errors else None  # what the task passes on
            if passed is not None:
                valid += 1
                assert validate(passed, PRESETS[preset]) == []
            hits = field_hits(doc.fields, passed)
            right, total = right + hits[0], total + hits[1]
        figures[kind] = (right / total, valid / count, (time.perf_counter() - started) / count)
    with capsys.disabled():
        for kind, (accuracy, validity, seconds) in figures.items():
            print(f"\n{kind}: field accuracy {accuracy:.3f}, valid {validity:.0%}, {seconds:.2f} s/document")
    for kind, (accuracy, _, _) in figures.items():
        assert accuracy >= 0.8, (kind, accuracy)


def test_rules_on_ocr_without_spaces():
    rows = ["OakStreetDeli", "Date:2026-07-02", "Lamp 12.92", "Hammer 20.02", "Subtotal 32.94", "TOTAL 32.94"]
    data = extract_rules.receipt(rows)
    assert data == {"merchant": "Oak Street Deli", "date": "2026-07-02", "total": 32.94,
                    "items": [{"name": "Lamp", "price": 12.92}, {"name": "Hammer", "price": 20.02}]}
    assert extract_rules.invoice(["Blue LakeCafe", "InvoiceNo:INV-6783", "Billto:FatimaNoor", "Totaldue 92.49"]) == {
        "vendor": "Blue Lake Cafe", "invoice_number": "INV-6783", "customer": "Fatima Noor", "total": 92.49}
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}
    assert extract_rules.from_labels(["Name:DanaKowalski", "Age: 41", "Pet: cat"], schema) == {
        "name": "Dana Kowalski", "age": 41}
