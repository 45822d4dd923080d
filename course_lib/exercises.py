"""Self-checks for the lessons' exercises.

An exercise cell holds a placeholder ``...`` for the learner to replace:

    answer = ...          # how many negatives does each anchor have?
    check(answer, expected=28, what="negatives per anchor")

``check`` says "not attempted yet" for ``...`` (so a fresh notebook still
runs top to bottom), prints a tick for a right answer and raises an
``AssertionError`` with a hint for a wrong one. The reference solution
further down calls ``check`` with the worked answer, so CI proves it right.
"""

from __future__ import annotations

import numpy as np


def check(answer, expected, what, tolerance=1e-6, hint=None):
    """Compare a learner's ``answer`` with ``expected``; True when right, False when not attempted."""
    if answer is Ellipsis:
        print(f"✎ {what}: not attempted yet (replace `...`); the solution is further down.")
        return False
    if not _matches(answer, expected, tolerance):
        message = f"Not quite: {what} should be {_show(expected)}, got {_show(answer)}."
        raise AssertionError(message + (f" Hint: {hint}" if hint else ""))
    print(f"✓ {what}: correct ({_show(answer)})")
    return True


def _matches(answer, expected, tolerance):
    if isinstance(expected, str) or isinstance(answer, str):
        return str(answer).strip().lower() == str(expected).strip().lower()
    if isinstance(expected, (set, frozenset)):
        return set(answer) == set(expected)
    try:
        a = np.asarray(answer, dtype=float)
        e = np.asarray(expected, dtype=float)
    except (TypeError, ValueError):
        return answer == expected
    return a.shape == e.shape and bool(np.allclose(a, e, rtol=tolerance, atol=tolerance))


def _show(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."
