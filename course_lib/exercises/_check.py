"""``check``: feedback on a prediction or a numeric answer; never raises, returns None."""

from __future__ import annotations

import numpy as np

from course_lib.exercises import _format


def check(answer, expected, what, why=None, *, tolerance=1e-6, hint=None):
    """Print whether ``answer`` is right and why; never raises, returns None.

    ``answer is ...`` (the placeholder) -> "not done yet". Floats are
    compared within ``tolerance`` (relative and absolute), strings without
    regard to case or surrounding spaces, sets as sets, tuples and lists
    item by item. ``hint`` is an older name for ``why``.
    """
    why = why if why is not None else hint
    after = f" {why}" if why else ""
    try:
        if _unanswered(answer):
            print(f"✎ {what}: not done yet (replace `...` with your answer).")
            return
        right = _matches(answer, expected, tolerance)
        if right:
            print(f"✓ {what}: {_show(answer)} is right.{after}")
        else:
            print(f"✗ {what}: you said {_show(answer)}; the answer is {_show(expected)}.{after}")
    except Exception as error:  # noqa: BLE001 - feedback must never halt Run All
        print(f"✗ {what}: could not compare your answer ({type(error).__name__}: {error}); "
              f"the answer is {_show(expected)}.{after}")


def _unanswered(answer):
    if answer is Ellipsis:
        return True
    return isinstance(answer, (tuple, list)) and any(a is Ellipsis for a in answer)


def _matches(answer, expected, tolerance):
    if isinstance(expected, str) or isinstance(answer, str):
        return str(answer).strip().lower() == str(expected).strip().lower()
    if isinstance(expected, (set, frozenset)):
        try:
            return set(answer) == set(expected)
        except TypeError:
            return False
    if isinstance(expected, dict):
        return (isinstance(answer, dict) and answer.keys() == expected.keys()
                and all(_matches(answer[k], expected[k], tolerance) for k in expected))
    if isinstance(expected, (tuple, list)) and isinstance(answer, (tuple, list)):
        return len(answer) == len(expected) and all(
            _matches(a, e, tolerance) for a, e in zip(answer, expected))
    if answer is None or expected is None:
        return answer is expected
    try:
        a = np.asarray(answer, dtype=float)
        e = np.asarray(expected, dtype=float)
    except (TypeError, ValueError):
        return bool(answer == expected)
    return a.shape == e.shape and bool(np.allclose(a, e, rtol=tolerance, atol=tolerance))


def _show(value):
    if isinstance(value, str):
        return value
    return _format.value(value)
