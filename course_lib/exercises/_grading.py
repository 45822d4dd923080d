"""The grading loop shared by every build exercise.

An :class:`Exercise` is a record: its name and lesson, the signature the
learner implements, a reference implementation, a generator of cases
(random ones with fixed seeds, and edge cases), the kind of value it
returns (see :mod:`._kinds`) and the typical :class:`Mistake` s. ``grade``
runs the learner's function on every case, stops at the first one that
fails and prints it, with a hint when the wrong value is one that a known
mistake produces.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from course_lib.exercises import _format


@dataclass(frozen=True)
class Case:
    """The arguments of one call (name -> value, in call order) and what is special about it."""

    args: dict
    note: str = ""

    def fresh(self):
        """Copies, so that a function that modifies its inputs cannot spoil the next call."""
        return [copy.deepcopy(v) for v in self.args.values()]


@dataclass(frozen=True)
class Mistake:
    """A typical error and the hint that explains it.

    ``variant(*args)`` computes the wrong answer this mistake gives (the hint
    shows when the learner's value equals it and differs from the right
    one); ``spots(received, args, expected) -> bool`` recognises mistakes
    that have no single wrong answer (NaN, overflow, a masked entry chosen).
    """

    hint: str
    variant: Callable | None = None
    spots: Callable | None = None


@dataclass
class Exercise:
    name: str
    lesson: str
    signature: str
    reference: Callable
    cases: Callable[[], list]
    kind: Any
    mistakes: tuple = ()
    _graded: list | None = field(default=None, repr=False)

    def graded_cases(self):
        """[(case, expected)], computed once."""
        if self._graded is None:
            self._graded = [(case, self.reference(*case.fresh())) for case in self.cases()]
        return self._graded


_LAST = {}  # name -> whether the last grade passed


def passed(name):
    """Whether the last ``grade(name, ...)`` passed every case."""
    return _LAST.get(name, False)


def run(exercise, fn):
    """The report of grading ``fn`` (one or more lines); records whether it passed."""
    _LAST[exercise.name] = False
    if not callable(fn):
        return f"✗ {exercise.name}: expected a function, received a {type(fn).__name__}."
    cases = exercise.graded_cases()
    for k, (case, expected) in enumerate(cases, 1):
        head = f"✗ {exercise.name}: case {k} of {len(cases)} fails" + (f" ({case.note})" if case.note else "")
        try:
            with _quiet():
                received = fn(*case.fresh())
        except NotImplementedError:
            return (f"✎ {exercise.name}: not done yet (replace `raise NotImplementedError` with "
                    "your code); a solution is in the Solutions section at the end.")
        except Exception as error:  # noqa: BLE001 - the learner's bug is reported, never raised
            return "\n".join([head, *_inputs(case), f"  your function raised {_error(error)}"])
        problem = exercise.kind.problem(received, expected)
        if problem:
            return "\n".join([head, *_inputs(case), f"  {problem}"])
        value = exercise.kind.read(received)
        if not exercise.kind.equal(value, expected):
            return "\n".join([head, *_inputs(case), *_difference(exercise, fn, cases, k - 1, value)])
    _LAST[exercise.name] = True
    return f"✓ {exercise.name}: all {len(cases)} cases pass"


def _inputs(case):
    return [_format.argument(name, v) for name, v in case.args.items()]


def _difference(exercise, fn, cases, k, value):
    kind, (case, expected) = exercise.kind, cases[k]
    shown = _format.pair(expected, value, kind.show)
    lines = [f"  expected: {shown[0]}", f"  received: {shown[1]}"]
    where = kind.where(expected, value)
    if where:
        lines.append(f"  ({where})")
    lines += [f"  Hint: {hint}" for hint in _hints(exercise, fn, cases, k, value)[:2]]
    return lines


def _hints(exercise, fn, cases, k, value):
    """The hints of the mistakes that explain ``value``, the wrong answer to case ``k``.

    A mistake whose wrong answer equals ``value`` explains it best; when
    several do on this case, the learner's answers to the other cases decide
    between them (a mistake that would answer them differently is not the
    one). Mistakes recognised by ``spots`` come only when no wrong answer
    matched.
    """
    case, expected = cases[k]
    same = [m for m in exercise.mistakes if m.variant is not None
            and _gives(exercise.kind, m, case, expected, value)]
    for other, other_expected in cases[k + 1:] + cases[:k]:
        if len(same) < 2:
            break
        other_value = _answer(exercise.kind, fn, other, other_expected)
        if other_value is not None:
            same = [m for m in same if _gives(exercise.kind, m, other, other_expected, other_value,
                                               differ=False)] or same
    if not same:
        same = [m for m in exercise.mistakes if m.spots is not None
                and _safely(lambda m=m: m.spots(value, case.args, expected))]
    return list(dict.fromkeys(m.hint for m in same))


def _gives(kind, mistake, case, expected, value, differ=True):
    """Whether ``mistake`` gives ``value`` on ``case`` (``differ``: and not the right answer)."""
    def check():
        wrong = mistake.variant(*case.fresh())
        return (kind.problem(wrong, expected) is None and kind.equal(value, kind.read(wrong))
                and not (differ and kind.equal(kind.read(wrong), expected)))
    return _safely(check)


def _answer(kind, fn, case, expected):
    """The learner's comparable answer to ``case``, or None when it raises or is malformed."""
    def call():
        received = fn(*case.fresh())
        return None if kind.problem(received, expected) else (kind.read(received),)
    result = _safely(call)
    return result[0] if result else None


def _safely(compute):
    """``compute()``, or False when it raises (a variant that cannot run explains nothing)."""
    try:
        with _quiet():
            return compute()
    except Exception:  # noqa: BLE001
        return False


def _error(error):
    message = str(error).strip().splitlines()
    text = message[0] if message else ""
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class _quiet:
    """No NumPy warnings while the learner's code runs: the report explains what went wrong."""

    def __enter__(self):
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        self._errstate = np.errstate(all="ignore")
        self._errstate.__enter__()

    def __exit__(self, *exc):
        self._errstate.__exit__(*exc)
        self._warnings.__exit__(*exc)
        return False
