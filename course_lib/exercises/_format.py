"""How the feedback shows values: short, 4 significant digits, no float32 noise."""

from __future__ import annotations

import numbers

import numpy as np


def number(value, digits=4, point=False):
    """0.3000001013278961 -> '0.3'; 2688.0 -> '2688' ('2688.0' with ``point``); nan -> 'nan'."""
    value = float(value)
    if not np.isfinite(value):
        return str(value)
    text = f"{value:.{digits}g}"
    if point and text.lstrip("-").isdigit():
        text += ".0"
    return text


def value(v, digits=4, prefix=""):
    """A returned value, compactly (``prefix``: the text before it, to align array rows)."""
    if v is None or isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        return number(v, digits, point=True)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {value(x, digits)}" for k, x in v.items()) + "}"
    if isinstance(v, (set, frozenset)):
        return "{" + ", ".join(value(x, digits) for x in sorted(v, key=repr)) + "}"
    if isinstance(v, (tuple, list)):
        inner = ", ".join(value(x, digits) for x in v)
        return f"({inner})" if isinstance(v, tuple) else f"[{inner}]"
    try:
        array = np.asarray(v)
    except Exception:  # noqa: BLE001 - anything printable will do
        return repr(v)
    if array.dtype == object:
        return repr(v)
    if array.ndim == 0:
        return value(array.item(), digits)
    if array.dtype.kind != "f":
        return np.array2string(array, prefix=prefix, max_line_width=100)
    width = max(len(number(x, digits)) for x in array.flat) if array.size else 0
    formatter = {"float_kind": lambda x: number(x, digits).rjust(width)}
    return np.array2string(array, formatter=formatter, prefix=prefix, max_line_width=100)


def argument(name, v):
    """One input of a case, ``name = value``; a dict shows one key per line."""
    if isinstance(v, dict):
        return "\n".join(argument(f"{name}[{k!r}]", x) for k, x in v.items())
    head = f"  {name} = "
    if isinstance(v, (list, tuple)) and _is_numeric_array(v):
        v = np.asarray(v)
    if isinstance(v, np.ndarray) and v.ndim > 0:
        text = np.array2string(v, precision=3, suppress_small=True, prefix=head, max_line_width=100)
        return head + text + (f"  (shape {v.shape})" if v.size == 0 else "")
    return head + value(v)


def pair(expected, received, show):
    """``show(expected)`` and ``show(received)`` with enough digits to tell them apart."""
    for digits in (4, 6, 9, 12, 17):
        a, b = show(expected, digits), show(received, digits)
        if a != b:
            break
    return a, b


def _is_numeric_array(v):
    try:
        array = np.asarray(v)
    except Exception:  # noqa: BLE001
        return False
    return array.dtype.kind in "biuf" and array.ndim >= 1
