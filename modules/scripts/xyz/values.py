"""A1111's X/Y/Z value syntax: comma-separated values (CSV quoting), and for number axes ranges.

* ``a, b, "c, d"``: CSV with quotes, each value stripped;
* integers: ``1-5`` (1,2,3,4,5), ``1-10 (+2)`` (1,3,5,7,9: a step, end included when hit),
  ``1-10 [5]`` (five values spread evenly, truncated to integers: 1,3,5,7,10);
* floats: ``0.5-1.5 (+0.25)`` (0.5 to 1.5 by 0.25, as ``numpy.arange(start, end + step, step)``),
  ``0-1 [5]`` (0, 0.25, 0.5, 0.75, 1);
* blank values of number axes are dropped; a value that is not a number is refused, naming it.
"""

from __future__ import annotations

import csv
import io
import math
import re
from itertools import permutations
from typing import Any

_INT = r"([+-]?\s*\d+)"
_FLOAT = r"([+-]?\s*\d+(?:\.\d*)?)"
RE_INT_STEP = re.compile(rf"\s*{_INT}\s*-\s*{_INT}(?:\s*\(([+-]\d+)\s*\))?\s*")
RE_INT_COUNT = re.compile(rf"\s*{_INT}\s*-\s*{_INT}(?:\s*\[(\d+)\s*\])?\s*")
RE_FLOAT_STEP = re.compile(rf"\s*{_FLOAT}\s*-\s*{_FLOAT}(?:\s*\(([+-]\d+(?:\.\d*)?)\s*\))?\s*")
RE_FLOAT_COUNT = re.compile(rf"\s*{_FLOAT}\s*-\s*{_FLOAT}(?:\s*\[(\d+(?:\.\d*)?)\s*\])?\s*")

#: more values than this from one range is refused (a typo such as ``1-1000000`` must not hang the precheck)
MAX_RANGE_VALUES = 10000


class ValueSyntaxError(ValueError):
    """Axis values that cannot be read (the message names the value)."""


def split_csv(text: str) -> list[str]:
    """A1111's ``csv_string_to_list_strip``: CSV fields of every line, each stripped (blanks kept)."""
    if not text or not text.strip():
        return []
    try:
        rows = list(csv.reader(io.StringIO(text), skipinitialspace=True))
    except csv.Error as exc:
        raise ValueSyntaxError(f"cannot read {text!r} as comma-separated values: {exc}") from None
    return [value.strip() for row in rows for value in row]


def join_csv(values: list[Any]) -> str:
    """Values as one CSV line (quoted where needed): what ``X Values`` holds for dropdown values."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([str(v) for v in values])
    return out.getvalue()


def _num(text: str) -> str:
    return text.replace(" ", "")


def _arange(start: float, stop: float, step: float) -> list[float]:
    if step == 0:
        raise ValueSyntaxError("a range step must not be 0")
    count = max(0, math.ceil((stop - start) / step))
    if count > MAX_RANGE_VALUES:
        raise ValueSyntaxError(f"a range of {count} values is too many (at most {MAX_RANGE_VALUES})")
    delta = (start + step) - start  # as numpy fills an arange: the same values to the last bit
    return [start + i * delta for i in range(count)]


def _linspace(start: float, end: float, count: int) -> list[float]:
    if count > MAX_RANGE_VALUES:
        raise ValueSyntaxError(f"a range of {count} values is too many (at most {MAX_RANGE_VALUES})")
    if count <= 0:
        return []
    if count == 1:
        return [start]
    step = (end - start) / (count - 1)
    return [start + i * step for i in range(count - 1)] + [end]


def expand_ints(values: list[str]) -> list[int]:
    out: list[int] = []
    for value in values:
        if not value.strip():
            continue
        step, count = RE_INT_STEP.fullmatch(value), RE_INT_COUNT.fullmatch(value)
        if step is not None:
            start, end = int(_num(step.group(1))), int(_num(step.group(2))) + 1
            by = int(step.group(3)) if step.group(3) else 1
            out.extend(int(x) for x in _arange(start, end, by))
        elif count is not None:
            start, end = int(_num(count.group(1))), int(_num(count.group(2)))
            out.extend(int(x) for x in _linspace(start, end, int(count.group(3))))
        else:
            try:
                out.append(int(value.strip()))
            except ValueError:
                raise ValueSyntaxError(f"{value.strip()!r} is not an integer or a range like 1-5, 1-10 (+2), "
                                       f"1-10 [5]") from None
    return out


def expand_floats(values: list[str]) -> list[float]:
    out: list[float] = []
    for value in values:
        if not value.strip():
            continue
        step, count = RE_FLOAT_STEP.fullmatch(value), RE_FLOAT_COUNT.fullmatch(value)
        if step is not None:
            start, end = float(_num(step.group(1))), float(_num(step.group(2)))
            by = float(step.group(3)) if step.group(3) else 1.0
            out.extend(_arange(start, end + by, by))
        elif count is not None:
            start, end = float(_num(count.group(1))), float(_num(count.group(2)))
            out.extend(_linspace(start, end, int(float(count.group(3)))))
        else:
            try:
                out.append(float(value.strip()))
            except ValueError:
                raise ValueSyntaxError(f"{value.strip()!r} is not a number or a range like 0.5-1.5 (+0.25), "
                                       f"0-1 [5]") from None
    return out


def parse_values(text: str | list[Any], kind: str) -> list[Any]:
    """The values of an axis of ``kind`` ("int", "float", "str", "permutations", "nothing") from A1111's
    syntax (a list is taken as already split, e.g. a dropdown's choices)."""
    if kind == "nothing":
        return [None]
    values = [str(v).strip() for v in text] if isinstance(text, list) else split_csv(text)
    if kind == "int":
        return expand_ints(values)
    if kind == "float":
        return expand_floats(values)
    if kind == "permutations":
        if math.factorial(len(values)) > MAX_RANGE_VALUES:
            raise ValueSyntaxError(f"{len(values)} values have {math.factorial(len(values))} orders: too many")
        return [list(order) for order in permutations(values)]
    return values
