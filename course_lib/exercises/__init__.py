"""Graded exercises and self-checks for the lessons.

Build exercises: the learner completes a template and grades it::

    from course_lib import exercises as ex

    def pairwise_distances(x):
        raise NotImplementedError("your code")

    ex.grade("pairwise_distances", pairwise_distances)

``grade`` runs the function on many cases (random ones with fixed seeds and
edge cases), compares with the course's own implementation and prints one
line when every case passes, or the first failing case: its inputs, the
expected and the received value, and a hint when the wrong value is one a
typical mistake gives. An unfinished template (``NotImplementedError``)
prints "not done yet". ``grade`` never raises and returns None, so Run All
carries on and the cell shows no ``Out:``. ``passed(name)`` says whether the
last grade of ``name`` passed (the lessons' CI cells assert it).

Predictions and numeric answers use :func:`check`::

    answer = ...          # how many negatives does each anchor have?
    check(answer, expected=28, what="negatives per anchor", why="B - K = 32 - 4.")

:data:`EXERCISES` maps each name to its :class:`Exercise` record (lesson,
signature, reference implementation, cases, typical mistakes).
"""

from __future__ import annotations

from course_lib.exercises import _evaluation, _geometry, _mining, _softmax
from course_lib.exercises._check import check
from course_lib.exercises._grading import Case, Exercise, Mistake, passed, run

#: name -> :class:`Exercise`, in the order of the lessons.
EXERCISES = {
    exercise.name: exercise
    for module in (_geometry, _mining, _evaluation, _softmax)
    for exercise in module.EXERCISES
}

__all__ = ["EXERCISES", "Case", "Exercise", "Mistake", "check", "grade", "passed"]


def grade(name, fn):
    """Grade the learner's ``fn`` for exercise ``name``; print the result, return None."""
    exercise = EXERCISES.get(name)
    if exercise is None:
        print(f"✗ no exercise is called {name!r}; the exercises are: {', '.join(EXERCISES)}.")
        return
    try:
        report = run(exercise, fn)
    except Exception as error:  # noqa: BLE001 - never halt Run All, even on a grader bug
        report = (f"✗ {name}: the grader itself failed ({type(error).__name__}: {error}); "
                  "please report it to the course's issue tracker.")
    print(report)
