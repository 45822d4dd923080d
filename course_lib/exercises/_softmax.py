"""Exercises of lessons 07, 08 and 10: the softmax-shaped losses, one row or one triplet at a time."""

from __future__ import annotations

import math

import numpy as np

from course_lib.exercises._grading import Case, Exercise, Mistake
from course_lib.exercises._kinds import Number


def logsumexp(z):
    """log(sum exp z) without overflow: shift by the largest value first."""
    top = np.max(z)
    return float(top + np.log(np.sum(np.exp(z - top))))


def softplus(f):
    """log(1 + exp f) without overflow: max(f, 0) + log1p(exp(-|f|))."""
    return float(max(f, 0.0) + np.log1p(np.exp(-abs(f))))


def _overflows(largest_exponent):
    """Spots inf/nan where a plain np.exp overflows on this case (exponent above ~709)."""
    def spots(got, args, expected):
        with np.errstate(all="ignore"):
            too_large = np.isinf(np.exp(largest_exponent(*args.values())))
        return not np.isfinite(got) and np.isfinite(expected) and too_large
    return spots


# --------------------------------------------------------------- N-pairs row
def npairs_row(anchor, positives, i):
    """-log softmax(positives @ anchor)[i] = logsumexp(S) - S_i."""
    logits = positives @ anchor
    return logsumexp(logits) - float(logits[i])


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _npairs_cases():
    rng = np.random.default_rng(808)
    cases = [
        Case({"anchor": np.array([1.0, 0.0]), "positives": np.array([[0.9, 0.1], [0.2, 0.8], [-0.5, 0.5]]),
              "i": 0}),
        Case({"anchor": np.array([0.6, 0.8]), "positives": np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]]),
              "i": 2}, "the positive is the last row"),
        Case({"anchor": (rng.normal(size=4) * 30).round(1), "positives": (rng.normal(size=(3, 4)) * 30).round(1),
              "i": 1}, "large logits: exp overflows"),
        Case({"anchor": np.array([0.5, -0.5]), "positives": np.array([[1.0, 2.0]]), "i": 0},
             "N = 1: no negative"),
        Case({"anchor": np.array([1.0, 1.0]), "positives": np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]),
              "i": 1}, "identical positives"),
    ]
    for _ in range(30):
        n, d = int(rng.integers(2, 7)), int(rng.integers(2, 6))
        scale = float(rng.choice([1.0, 2.0, 4.0]))
        cases.append(Case({"anchor": rng.normal(size=d).round(2) * scale,
                           "positives": rng.normal(size=(n, d)).round(2) * scale,
                           "i": int(rng.integers(0, n))}))
    return cases


NPAIRS = Exercise(
    name="npairs_row",
    lesson="07",
    signature="npairs_row(anchor, positives, i) -> float: -log softmax(positives @ anchor)[i], stably",
    reference=npairs_row,
    cases=_npairs_cases,
    kind=Number(),
    mistakes=(
        Mistake("np.exp overflowed (inf or nan) for large logits: subtract the largest logit "
                "before exp, log-sum-exp = m + log(sum exp(S - m)).",
                spots=_overflows(lambda a, p, i: np.max(p @ a))),
        Mistake("the sign: the loss is MINUS log softmax, a positive number (the softmax "
                "probability is below 1).", variant=lambda a, p, i: -npairs_row(a, p, i)),
        Mistake("the denominator sums over ALL N positives, the anchor's own positive included "
                "(it is a softmax over the N columns).",
                variant=lambda a, p, i: logsumexp(np.delete(p @ a, i)) - float((p @ a)[i])),
        Mistake("the logits are plain dot products a·p_j: no normalisation to cosines.",
                variant=lambda a, p, i: npairs_row(_unit(a), _unit(p), i)),
        Mistake("subtract the positive's logit S_i from the log-sum-exp.",
                variant=lambda a, p, i: logsumexp(p @ a)),
    ),
)


# ---------------------------------------------------------- angular triplet
def _f(a, p, n, alpha_degrees, tangent=None, cross=None, push=None):
    """f; the keywords replace one part of it, for the variants of typical mistakes."""
    t = math.tan(math.radians(alpha_degrees)) ** 2 if tangent is None else tangent
    pull = 2.0 * (1.0 + t) * (a @ p) if cross is None else cross(t, a, p)
    return (4.0 * t * (a + p) @ n if push is None else push(t, a, p, n)) - pull


def angular_triplet(a, p, n, alpha_degrees):
    """log(1 + exp f), f = 4 t (a + p)·n - 2 (1 + t) a·p, t = tan²(alpha in degrees)."""
    return softplus(_f(a, p, n, alpha_degrees))


def _angles(*degrees):
    return [np.array([math.cos(math.radians(g)), math.sin(math.radians(g))]) for g in degrees]


def _angular_cases():
    rng = np.random.default_rng(909)

    def case(a, p, n, alpha, note=""):
        return Case({"a": a, "p": p, "n": n, "alpha_degrees": alpha}, note)

    cases = [
        case(*_angles(0, 30, 60), 45.0),
        case(*_angles(0, 20, 170), 36.0, "a far negative"),
        case(*_angles(10, 10, 90), 40.0, "a = p"),
        case(*_angles(0, 5, 2), 85.0, "large alpha, the negative between a and p: exp overflows"),
        case(*_angles(0, 90, 45), 30.0),
    ]
    for _ in range(30):
        a, p, n = _unit(rng.normal(size=(3, int(rng.integers(2, 5)))))
        cases.append(case(a, p, n, float(rng.choice([30.0, 36.0, 40.0, 45.0, 50.0]))))
    return cases


ANGULAR = Exercise(
    name="angular_triplet",
    lesson="08",
    signature=("angular_triplet(a, p, n, alpha_degrees) -> float: log(1 + exp(4 t (a + p)·n - "
               "2 (1 + t) a·p)), t = tan²(alpha), alpha in degrees"),
    reference=angular_triplet,
    cases=_angular_cases,
    kind=Number(),
    mistakes=(
        Mistake("np.exp overflowed (inf) for a large f: log(1 + exp f) = max(f, 0) + "
                "log1p(exp(-|f|)), or np.logaddexp(0, f).",
                spots=_overflows(lambda a, p, n, g: _f(a, p, n, g))),
        Mistake("alpha is in degrees: np.tan(np.radians(alpha_degrees)) ** 2 (np.tan reads radians).",
                variant=lambda a, p, n, g: softplus(_f(a, p, n, g, tangent=math.tan(g) ** 2))),
        Mistake("t is tan SQUARED: t = np.tan(np.radians(alpha_degrees)) ** 2.",
                variant=lambda a, p, n, g: softplus(_f(a, p, n, g, tangent=math.tan(math.radians(g))))),
        Mistake("a + typed for a ×: 4 t (a + p)·n is the product 4 * t * ((a + p) @ n).",
                variant=lambda a, p, n, g: softplus(_f(a, p, n, g, push=lambda t, a, p, n: 4.0 * t + (a + p) @ n))),
        Mistake("a × typed for a +: the formula has (a + p)·n, the SUM of anchor and positive.",
                variant=lambda a, p, n, g: softplus(_f(a, p, n, g, push=lambda t, a, p, n: 4.0 * t * (a * p) @ n))),
        Mistake("the second term is 2 (1 + t) a·p, not 2 t a·p.",
                variant=lambda a, p, n, g: softplus(_f(a, p, n, g, cross=lambda t, a, p: 2.0 * t * (a @ p)))),
        Mistake("the loss is log(1 + exp f), not f itself.",
                variant=lambda a, p, n, g: float(_f(a, p, n, g))),
        Mistake("the angular loss is smooth, log(1 + exp f), not the hinge max(0, f).",
                variant=lambda a, p, n, g: max(0.0, float(_f(a, p, n, g)))),
        Mistake("the sign of the second term: f = 4 t (a + p)·n MINUS 2 (1 + t) a·p.",
                variant=lambda a, p, n, g: softplus(_f(a, p, n, g, cross=lambda t, a, p: -2.0 * (1 + t) * (a @ p)))),
    ),
)


# ------------------------------------------------------------------ NT-Xent row
def nt_xent_row(similarities, anchor, positive, temperature):
    """-log(exp(s_p / T) / sum_{k != anchor} exp(s_k / T)), stably."""
    z = np.asarray(similarities, dtype=float) / temperature
    return logsumexp(np.delete(z, anchor)) - float(z[positive])


def _nt_xent_cases():
    rng = np.random.default_rng(1010)

    def case(s, anchor, positive, t, note=""):
        return Case({"similarities": np.asarray(s, dtype=float), "anchor": anchor,
                     "positive": positive, "temperature": t}, note)

    cases = [
        case([1.0, 0.8, 0.1, -0.3], 0, 1, 0.5),
        case([0.7, -0.2, 1.0, 0.4, 0.1], 2, 0, 0.1, "the anchor is not item 0"),
        case([0.9, 1.0], 1, 0, 0.5, "B = 2: no negative"),
        case([1.0, 0.95, 0.9, -0.5], 0, 2, 0.001, "a tiny temperature: exp overflows"),
        case([1.0, 0.3, 0.3, 0.3], 0, 1, 1.0, "temperature 1"),
    ]
    for _ in range(30):
        b = int(rng.integers(3, 10))
        s = rng.uniform(-1, 1, b).round(2)
        anchor, positive = (int(i) for i in rng.choice(b, 2, replace=False))
        s[anchor] = 1.0
        cases.append(case(s, anchor, positive, float(rng.choice([0.05, 0.1, 0.2, 0.5, 1.0]))))
    return cases


NT_XENT = Exercise(
    name="nt_xent_row",
    lesson="10",
    signature=("nt_xent_row(similarities, anchor, positive, temperature) -> float: "
               "-log(exp(s_p / T) / sum over k != anchor of exp(s_k / T)), stably"),
    reference=nt_xent_row,
    cases=_nt_xent_cases,
    kind=Number(),
    mistakes=(
        Mistake("np.exp overflowed (inf or nan): with s / T up to 1 / T, use the log-sum-exp "
                "shift m + log(sum exp(z - m)).",
                spots=_overflows(lambda s, a, p, t: np.max(np.asarray(s) / t))),
        Mistake("the anchor itself is not in the denominator: sum over k != anchor (its "
                "similarity to itself, 1 / T, would dominate every row).",
                variant=lambda s, a, p, t: logsumexp(np.asarray(s) / t) - s[p] / t),
        Mistake("the temperature is forgotten: divide every similarity by T.",
                variant=lambda s, a, p, t: nt_xent_row(s, a, p, 1.0)),
        Mistake("divide by the temperature, do not multiply: z = s / T.",
                variant=lambda s, a, p, t: nt_xent_row(s, a, p, 1.0 / t)),
        Mistake("the positive belongs in the denominator too: sum over every k != anchor.",
                variant=lambda s, a, p, t: logsumexp(np.delete(np.asarray(s) / t, [a, p])) - s[p] / t),
        Mistake("the sign: the loss is MINUS the log of a probability, a positive number.",
                variant=lambda s, a, p, t: -nt_xent_row(s, a, p, t)),
    ),
)

EXERCISES = (NPAIRS, ANGULAR, NT_XENT)
