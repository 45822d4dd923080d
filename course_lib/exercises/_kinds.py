"""What an exercise returns: how to check its type and shape, compare and show it.

Each kind has four methods used by the grading loop:

* ``problem(received, expected)``: a sentence when the value has the wrong
  type or shape (None when it can be compared);
* ``read(received)``: the value in a comparable form;
* ``equal(a, b)``: right within the tolerance;
* ``show(value, digits)``: a short text; ``where(expected, received)``
  optionally says where they differ.
"""

from __future__ import annotations

import numbers

import numpy as np

from course_lib.exercises import _format


def _none_problem(received):
    if received is None:
        return "your function returned None: is the `return` missing?"
    return None


class Number:
    """One float, compared with a relative and an absolute tolerance."""

    def __init__(self, rtol=1e-5, atol=1e-6):
        self.rtol, self.atol = rtol, atol

    def problem(self, received, expected):
        if _none_problem(received):
            return _none_problem(received)
        if isinstance(received, (bool, np.bool_, str)):
            return f"expected one number (a float), received {received!r}."
        if isinstance(received, numbers.Real):
            return None
        try:
            array = np.asarray(received, dtype=float)
        except (TypeError, ValueError):
            return f"expected one number (a float), received a {type(received).__name__}."
        if array.size != 1:
            return (f"expected one number (a float), received an array of shape {array.shape}: "
                    "is a mean or a sum missing?")
        return None

    def read(self, received):
        return float(np.asarray(received, dtype=float).reshape(()))

    def equal(self, a, b):
        return bool(np.isclose(a, b, rtol=self.rtol, atol=self.atol))

    def show(self, v, digits=4):
        return _format.number(v, digits, point=True)

    def where(self, expected, received):
        return None


class Array:
    """A float array of the expected shape; ``zero_diagonal``: its diagonal must be exactly 0."""

    def __init__(self, rtol=1e-5, atol=1e-6, zero_diagonal=False):
        self.rtol, self.atol, self.zero_diagonal = rtol, atol, zero_diagonal

    def problem(self, received, expected):
        if _none_problem(received):
            return _none_problem(received)
        try:
            array = np.asarray(received, dtype=float)
        except (TypeError, ValueError):
            return f"expected a NumPy array of numbers, received a {type(received).__name__}."
        if array.shape != expected.shape:
            shape = "x".join(map(str, expected.shape))
            return (f"expected an array of shape {expected.shape} ({shape}), received shape "
                    f"{array.shape}: check the axis you sum over.")
        return None

    def read(self, received):
        return np.asarray(received, dtype=float)

    def equal(self, a, b):
        if a.shape != b.shape or not np.allclose(a, b, rtol=self.rtol, atol=self.atol):
            return False
        return not self.zero_diagonal or bool(np.all(np.diag(a) == np.diag(b)))

    def show(self, v, digits=4):
        return _format.value(v, digits, prefix=" " * 12)

    def where(self, expected, received):
        wrong = ~np.isclose(received, expected, rtol=self.rtol, atol=self.atol)
        if self.zero_diagonal and not wrong.any():
            wrong = np.diag(np.diag(received) != np.diag(expected))
        if not wrong.any():
            return None
        index = tuple(int(i) for i in np.argwhere(wrong)[0])
        return (f"first difference at {list(index)}: expected {_format.number(expected[index])}, "
                f"received {_format.number(received[index], 6)}")


class Triplets:
    """(anchors, positives, negatives): three 1-D integer arrays of one length."""

    names = ("anchors", "positives", "negatives")

    def problem(self, received, expected):
        if _none_problem(received):
            return _none_problem(received)
        if isinstance(received, (str, dict)) or not hasattr(received, "__len__") or len(received) != 3:
            return "expected a tuple of three arrays (anchors, positives, negatives)."
        arrays = []
        for name, part in zip(self.names, received):
            array = np.asarray(part)
            if array.ndim != 1:
                return f"`{name}` should be a 1-D array of indices, received shape {array.shape}."
            if array.size and (array.dtype.kind not in "iuf" or np.any(array != np.round(array))):
                return f"`{name}` should hold integer indices, received {_format.value(array)}."
            arrays.append(array)
        if len({a.size for a in arrays}) != 1:
            sizes = ", ".join(f"{n} {a.size}" for n, a in zip(self.names, arrays))
            return f"the three arrays should have one length (one entry per triplet): {sizes}."
        return None

    def read(self, received):
        return tuple(np.asarray(part).astype(np.int64).reshape(-1) for part in received)

    def equal(self, a, b):
        return all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))

    def show(self, v, digits=4):
        rows = [f"{name:<9} {_format.value(part)}" for name, part in zip(self.names, v)]
        return ("\n" + " " * 12).join(rows)

    def where(self, expected, received):
        if len(expected[0]) != len(received[0]):
            return f"{len(expected[0])} triplets expected, {len(received[0])} received"
        rows = np.flatnonzero(np.any(np.stack(expected) != np.stack(received), axis=0))
        i = int(rows[0])
        wrong = tuple(int(x[i]) for x in received)
        right = tuple(int(x[i]) for x in expected)
        return f"first difference at triplet {i}: expected (a, p, n) = {right}, received {wrong}"


class Record:
    """A dict with fixed keys, each value one number (``counts``: shown as integers)."""

    def __init__(self, keys, counts=False, rtol=1e-5, atol=1e-6):
        self.keys, self.number, self.counts = tuple(keys), Number(rtol, atol), counts

    def problem(self, received, expected):
        if _none_problem(received):
            return _none_problem(received)
        if not isinstance(received, dict):
            return (f"expected a dict with the keys {', '.join(map(repr, self.keys))}, "
                    f"received a {type(received).__name__}.")
        missing = [k for k in self.keys if k not in received]
        if missing:
            return f"the dict has no key {', '.join(map(repr, missing))} (keys are spelled as in the task)."
        for key in self.keys:
            problem = self.number.problem(received[key], expected[key])
            if problem:
                return f"[{key!r}]: {problem}"
        return None

    def read(self, received):
        return {k: self.number.read(received[k]) for k in self.keys}

    def equal(self, a, b):
        return all(self.number.equal(a[k], b[k]) for k in self.keys)

    def show(self, v, digits=4):
        items = [f"{k!r}: {_format.number(v[k], digits, point=not self.counts)}" for k in self.keys]
        text = "{" + ", ".join(items) + "}"
        return text if len(text) <= 88 else "{" + (",\n" + " " * 13).join(items) + "}"

    def where(self, expected, received):
        wrong = [k for k in self.keys if not self.number.equal(expected[k], received[k])]
        return "wrong: " + ", ".join(map(repr, wrong)) if wrong else None


class EpochOrNone:
    """An epoch index (int) or None."""

    def problem(self, received, expected):
        if isinstance(received, (bool, np.bool_)):
            return "return the epoch's index (an int) or None, not True/False."
        if received is None or isinstance(received, numbers.Integral):
            return None
        if isinstance(received, numbers.Real) and float(received).is_integer():
            return None
        return f"expected an epoch index (an int) or None, received {_format.value(received)}."

    def read(self, received):
        return None if received is None else int(received)

    def equal(self, a, b):
        return a == b

    def show(self, v, digits=4):
        return "None (no collapse)" if v is None else f"{v} (0-based epoch index)"

    def where(self, expected, received):
        return None
