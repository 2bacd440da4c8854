"""Synthetic receipts, invoices and forms rendered with PIL, with their true fields (for the extraction
tests and the figures in docs/benchmarks.md). Deterministic for a given seed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFont

MERCHANTS = ("Corner Bakery", "Blue Lake Cafe", "Green Grocer", "Hilltop Hardware", "Sunset Books", "Metro Pharmacy",
             "Oak Street Deli", "River Market")
ITEMS = ("Coffee", "Bagel", "Milk", "Bread", "Apples", "Nails", "Hammer", "Notebook", "Pencils", "Soap", "Tea",
         "Cheese", "Tomatoes", "Batteries", "Gloves", "Lamp")
NAMES = ("Alice Martin", "Bruno Silva", "Chen Wei", "Dana Kowalski", "Emil Novak", "Fatima Noor", "Greta Olsen")


@dataclass(frozen=True)
class SyntheticDoc:
    image: Image.Image
    fields: dict[str, Any]
    kind: str


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _date(rng: random.Random) -> str:
    return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _page(lines: list[tuple[str, str]], width: int = 420) -> Image.Image:
    """Rows of (left text, right text), black on white."""
    font = _font(22)
    height = 40 + 34 * len(lines)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for row, (left, right) in enumerate(lines):
        y = 20 + 34 * row
        draw.text((20, y), left, fill="black", font=font)
        if right:
            w = draw.textlength(right, font=font)
            draw.text((width - 20 - w, y), right, fill="black", font=font)
    return image


def receipt(seed: int) -> SyntheticDoc:
    rng = random.Random(seed)
    merchant, date = rng.choice(MERCHANTS), _date(rng)
    items = [{"name": name, "price": round(rng.randint(50, 2500) / 100, 2)} for name in rng.sample(ITEMS, rng.randint(2, 4))]
    total = round(sum(item["price"] for item in items), 2)
    lines = [(merchant, ""), (f"Date: {date}", ""), ("", "")]
    lines += [(item["name"], f"{item['price']:.2f}") for item in items]
    lines += [("", ""), ("TOTAL", f"{total:.2f}")]
    return SyntheticDoc(_page(lines), {"merchant": merchant, "date": date, "items": items, "total": total}, "receipt")


def invoice(seed: int) -> SyntheticDoc:
    rng = random.Random(1000 + seed)
    vendor, customer, date = rng.choice(MERCHANTS), rng.choice(NAMES), _date(rng)
    number = f"INV-{rng.randint(1000, 9999)}"
    total = round(rng.randint(1000, 99999) / 100, 2)
    lines = [(vendor, ""), (f"Invoice No: {number}", ""), (f"Date: {date}", ""), (f"Bill to: {customer}", ""),
             ("", ""), ("Total due", f"{total:.2f}")]
    fields = {"vendor": vendor, "invoice_number": number, "date": date, "customer": customer, "total": total}
    return SyntheticDoc(_page(lines), fields, "invoice")


def form(seed: int) -> SyntheticDoc:
    rng = random.Random(2000 + seed)
    name = rng.choice(NAMES)
    email = name.split()[0].lower() + "@example.com"
    phone = f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
    date = _date(rng)
    lines = [("Registration form", ""), (f"Name: {name}", ""), (f"Email: {email}", ""), (f"Phone: {phone}", ""),
             (f"Date: {date}", "")]
    return SyntheticDoc(_page(lines), {"name": name, "email": email, "phone": phone, "date": date}, "form")


def degraded(doc: SyntheticDoc, seed: int) -> SyntheticDoc:
    """``doc`` as a phone photo might give it: slightly rotated, blurred, grey-tinted, with noise and JPEG."""
    import io

    import numpy as np
    from PIL import ImageFilter

    rng = np.random.default_rng(seed)
    image = doc.image.rotate(float(rng.uniform(-2.0, 2.0)), resample=Image.BICUBIC, expand=True, fillcolor="white")
    image = image.filter(ImageFilter.GaussianBlur(0.7))
    pixels = np.asarray(image).astype(np.float32) * 0.85 + 20 + rng.normal(0, 8, (image.height, image.width, 1))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=60)
    return SyntheticDoc(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), doc.fields, doc.kind)


def _norm(value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:.2f}"
    return "".join(str(value).split()).lower()


def field_hits(truth: dict[str, Any], got: dict[str, Any] | None) -> tuple[int, int]:
    """(fields right, fields in all), whitespace-normalised; a receipt's items count as name and price each."""
    got = got or {}
    right = total = 0
    for key, value in truth.items():
        if key == "items":
            found = got.get("items") if isinstance(got.get("items"), list) else []
            for index, item in enumerate(value):
                other = found[index] if index < len(found) and isinstance(found[index], dict) else {}
                for sub in ("name", "price"):
                    total += 1
                    right += _norm(item[sub]) == _norm(other.get(sub, ""))
            continue
        total += 1
        right += key in got and _norm(value) == _norm(got[key])
    return right, total
