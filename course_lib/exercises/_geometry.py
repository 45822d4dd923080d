"""Exercises of lessons 01-03: pairwise distances, the contrastive and the triplet loss."""

from __future__ import annotations

import numpy as np

from course_lib.exercises._grading import Case, Exercise, Mistake
from course_lib.exercises._kinds import Array, Number


# ----------------------------------------------------------- pairwise distances
def pairwise_distances(x):
    """D[i, j] = ||x_i - x_j||, from the differences themselves (exact 0 diagonal, no NaN)."""
    return np.sqrt(np.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1))


def _expansion(x, cross=-2.0):
    """||a||^2 + ||b||^2 + cross a.b, clamped at 0, then sqrt (a mistaken ``cross`` gives a variant)."""
    sq = np.sum(x**2, axis=1)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] + cross * x @ x.T, 0.0))


def _naive_expansion_is_negative(x):
    sq = np.sum(x**2, axis=1)
    return np.any(sq[:, None] + sq[None, :] - 2.0 * x @ x.T < 0.0)


def _off_diagonal_like(variant):
    """Spots an answer equal to ``variant(x)`` off the diagonal (whatever its diagonal holds)."""
    def spots(got, args, expected):
        off = ~np.eye(len(got), dtype=bool)
        wrong = variant(args["x"])[off]
        return (not np.allclose(wrong, expected[off], rtol=1e-5, atol=1e-6)
                and np.allclose(got[off], wrong, rtol=1e-5, atol=1e-6))
    return spots


def _only_the_diagonal_is_off(got, args, expected):
    """Right off the diagonal, tiny but not 0 on it."""
    off = ~np.eye(len(got), dtype=bool)
    diagonal = np.abs(np.diag(got))
    return (np.allclose(got[off], expected[off], rtol=1e-5, atol=1e-6)
            and np.all(diagonal < 1e-3) and np.any(diagonal != 0.0))


def _with_duplicates(rng, b, d):
    """Rows with exact copies, where the unclamped expansion goes negative (NaN after sqrt)."""
    while True:
        x = rng.normal(size=(b, d)).round(2) * 3
        x[b - 1] = x[0]
        x[b - 2] = x[1]
        if _naive_expansion_is_negative(x):
            return x


def _distance_cases():
    rng = np.random.default_rng(101)
    cases = [
        Case({"x": np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])}, "a 3-4-5 triangle"),
        Case({"x": rng.normal(size=(4, 2)).round(2)}),
        Case({"x": _with_duplicates(rng, 4, 3)}, "duplicate rows"),
        Case({"x": np.array([[1.5, -2.0, 0.5]])}, "a single row"),
        Case({"x": rng.normal(size=(5, 1)).round(2)}, "one dimension"),
        Case({"x": np.tile(rng.normal(size=(1, 3)).round(2), (4, 1))}, "all rows identical"),
        Case({"x": _with_duplicates(rng, 6, 5)}, "duplicate rows"),
        Case({"x": (rng.normal(size=(4, 3)) * 100).round(1)}, "large values"),
    ]
    for _ in range(30):
        b, d = rng.integers(2, 8), rng.integers(1, 6)
        cases.append(Case({"x": rng.normal(size=(b, d)).round(2)}))
    return cases


DISTANCES = Exercise(
    name="pairwise_distances",
    lesson="01",
    signature="pairwise_distances(x) -> [B, B] array: D[i, j] = ||x_i - x_j||, for x [B, D]",
    reference=pairwise_distances,
    cases=_distance_cases,
    kind=Array(zero_diagonal=True),
    mistakes=(
        Mistake("NaN where a = b (the diagonal, duplicate rows): rounding makes ||a||² + ||b||² "
                "- 2 a·b slightly negative there (like -1e-15), and np.sqrt of a negative is NaN. "
                "Clamp first: np.sqrt(np.maximum(squared, 0.0)).",
                spots=lambda got, args, expected: np.isnan(got).any()),
        Mistake("these are squared distances: take np.sqrt at the end.",
                spots=_off_diagonal_like(lambda x: pairwise_distances(x) ** 2)),
        Mistake("the cross term has a minus sign: ||a - b||² = ||a||² + ||b||² - 2 a·b.",
                spots=_off_diagonal_like(lambda x: _expansion(x, cross=+2.0))),
        Mistake("the cross term is 2 a·b, not a·b: ||a - b||² = ||a||² + ||b||² - 2 a·b.",
                spots=_off_diagonal_like(lambda x: _expansion(x, cross=-1.0))),
        Mistake("the diagonal must be exactly 0, but rounding in the expansion leaves tiny values "
                "(like 1e-8) there: set it with np.fill_diagonal(d, 0.0), or compute from the "
                "differences x[:, None] - x[None, :].",
                spots=_only_the_diagonal_is_off),
    ),
)


# ------------------------------------------------------------- contrastive loss
def contrastive_loss(d, y, margin):
    """Hadsell et al. 2006, Y = 0 similar: mean of (1 - Y) d²/2 + Y max(0, m - d)²/2."""
    y = np.asarray(y, dtype=float)
    return float(np.mean((1 - y) * 0.5 * d**2 + y * 0.5 * np.maximum(0.0, margin - d) ** 2))


def _contrastive_terms(d, y, margin, pull, push):
    y = np.asarray(y, dtype=float)
    return (1 - y) * pull(d) + y * push(margin, d)


def _contrastive_cases():
    rng = np.random.default_rng(202)
    cases = [
        Case({"d": np.array([0.2, 0.5, 1.5]), "y": np.array([0, 1, 1]), "margin": 1.0}),
        Case({"d": np.array([0.3, 0.8, 1.2, 0.1]), "y": np.array([0, 0, 0, 0]), "margin": 1.0},
             "similar pairs only"),
        Case({"d": np.array([0.3, 0.8, 1.2, 2.5]), "y": np.array([1, 1, 1, 1]), "margin": 1.5},
             "dissimilar pairs only"),
        Case({"d": np.array([1.0, 0.5, 1.0]), "y": np.array([1, 0, 1]), "margin": 1.0},
             "distances exactly at the margin"),
        Case({"d": np.array([0.7]), "y": np.array([1]), "margin": 2.0}, "one pair"),
        Case({"d": np.array([0.0, 0.0, 0.4]), "y": np.array([0, 1, 1]), "margin": 0.5},
             "zero distances"),
    ]
    for _ in range(30):
        n = rng.integers(1, 9)
        cases.append(Case({"d": rng.uniform(0, 2.5, n).round(2), "y": rng.integers(0, 2, n),
                           "margin": float(rng.choice([0.5, 1.0, 1.5, 2.0]))}))
    return cases


CONTRASTIVE = Exercise(
    name="contrastive_loss",
    lesson="02",
    signature=("contrastive_loss(d, y, margin) -> float: mean over the N pairs of "
               "(1 - Y) d²/2 + Y max(0, margin - d)²/2, Y = 0 similar, Y = 1 dissimilar"),
    reference=contrastive_loss,
    cases=_contrastive_cases,
    kind=Number(),
    mistakes=(
        Mistake("swapped convention: you used Y = 1 for similar pairs (the convention of many later "
                "papers and libraries). Hadsell et al. write Y = 0 for similar and Y = 1 for "
                "dissimilar pairs: (1 - Y) selects the pull term d²/2.",
                variant=lambda d, y, m: contrastive_loss(d, 1 - np.asarray(y), m)),
        Mistake("you summed over the pairs; the loss is their mean (divide by N).",
                variant=lambda d, y, m: len(d) * contrastive_loss(d, y, m)),
        Mistake("both terms carry a factor 1/2: d²/2 and max(0, m - d)²/2.",
                variant=lambda d, y, m: 2 * contrastive_loss(d, y, m)),
        Mistake("the hinge max(0, m - d) is missing: a dissimilar pair already farther than the "
                "margin must cost 0, not (m - d)².",
                variant=lambda d, y, m: float(np.mean(_contrastive_terms(
                    d, y, m, lambda d: 0.5 * d**2, lambda m, d: 0.5 * (m - d) ** 2)))),
        Mistake("square after the hinge: max(0, m - d)², not max(0, m² - d²).",
                variant=lambda d, y, m: float(np.mean(_contrastive_terms(
                    d, y, m, lambda d: 0.5 * d**2, lambda m, d: 0.5 * np.maximum(0, m**2 - d**2))))),
        Mistake("the push term is squared: max(0, m - d)²/2, not max(0, m - d)/2.",
                variant=lambda d, y, m: float(np.mean(_contrastive_terms(
                    d, y, m, lambda d: 0.5 * d**2, lambda m, d: 0.5 * np.maximum(0, m - d))))),
    ),
)


# ----------------------------------------------------------------- triplet loss
def _triplet_terms(x, triplets, margin, squared=False, negative_from=0):
    triplets = np.asarray(triplets, dtype=int).reshape(-1, 3)
    a, p, n = triplets.T
    d_ap = np.sum((x[a] - x[p]) ** 2, axis=1)
    d_an = np.sum((x[triplets[:, negative_from]] - x[n]) ** 2, axis=1)
    if not squared:
        d_ap, d_an = np.sqrt(d_ap), np.sqrt(d_an)
    return d_ap - d_an + margin


def triplet_loss(x, triplets, margin):
    """Mean over all T triplets of max(0, D(a, p) - D(a, n) + m), Euclidean D; 0 when T = 0."""
    terms = np.maximum(_triplet_terms(x, triplets, margin), 0.0)
    return float(terms.mean()) if terms.size else 0.0


def _mean_over_active(x, triplets, margin):
    terms = np.maximum(_triplet_terms(x, triplets, margin), 0.0)
    active = terms[terms > 0]
    return float(active.mean()) if active.size else 0.0


def _triplet_cases():
    rng = np.random.default_rng(303)
    x4 = np.array([[0.0, 0.0], [0.6, 0.8], [1.2, 0.5], [2.0, 0.0]])
    cases = [
        Case({"x": x4, "triplets": np.array([[0, 1, 2], [0, 1, 3]]), "margin": 0.5},
             "one active and one inactive triplet"),
        Case({"x": x4, "triplets": np.zeros((0, 3), dtype=int), "margin": 0.5}, "no triplet: T = 0"),
        Case({"x": x4, "triplets": np.array([[1, 0, 3], [2, 1, 0]]), "margin": 0.2},
             "every triplet inactive"),
        Case({"x": x4, "triplets": np.array([[3, 2, 0]]), "margin": 1.0}, "one triplet"),
        Case({"x": np.array([[1.0, 1.0], [1.0, 1.0], [0.5, 1.0]]),
              "triplets": np.array([[0, 1, 2], [2, 0, 1]]), "margin": 0.3}, "duplicate points"),
    ]
    for _ in range(30):
        b, t = rng.integers(3, 8), rng.integers(1, 7)
        x = rng.normal(size=(b, rng.integers(2, 4))).round(2)
        triplets = np.stack([rng.choice(b, 3, replace=False) for _ in range(t)])
        cases.append(Case({"x": x, "triplets": triplets,
                           "margin": float(rng.choice([0.2, 0.5, 1.0]))}))
    return cases


TRIPLET = Exercise(
    name="triplet_loss",
    lesson="03",
    signature=("triplet_loss(x, triplets, margin) -> float: mean over all T rows (a, p, n) of "
               "max(0, D(a, p) - D(a, n) + margin); 0.0 when T = 0"),
    reference=triplet_loss,
    cases=_triplet_cases,
    kind=Number(),
    mistakes=(
        Mistake("np.mean of an empty array is NaN: when there is no triplet (T = 0), return 0.0.",
                spots=lambda got, args, expected: np.isnan(got) and len(args["triplets"]) == 0),
        Mistake("you averaged over the active triplets only (loss > 0), the batch-all reduction "
                "of lesson 04; here the mean is over all T triplets, inactive ones count as 0.",
                variant=_mean_over_active),
        Mistake("you used squared distances (FaceNet's form); this course uses the plain "
                "Euclidean distance D (Hermans et al.).",
                variant=lambda x, t, m: float(np.mean(np.maximum(
                    _triplet_terms(x, t, m, squared=True), 0.0)))),
        Mistake("the hinge max(0, ·) is missing: a triplet whose negative is already farther than "
                "the positive by the margin must cost 0, not a negative amount.",
                variant=lambda x, t, m: float(np.mean(_triplet_terms(x, t, m)))),
        Mistake("the sign is swapped: the loss is D(a, p) - D(a, n) + margin (a far positive "
                "costs, a far negative helps).",
                variant=lambda x, t, m: float(np.mean(np.maximum(
                    -_triplet_terms(x, t, 0.0) + m, 0.0)))),
        Mistake("you summed over the triplets; the loss is their mean (divide by T).",
                variant=lambda x, t, m: len(t) * triplet_loss(x, t, m)),
        Mistake("the negative's distance is measured from the anchor, D(a, n), not from the "
                "positive, D(p, n).",
                variant=lambda x, t, m: float(np.mean(np.maximum(
                    _triplet_terms(x, t, m, negative_from=1), 0.0)))),
    ),
)

EXERCISES = (DISTANCES, CONTRASTIVE, TRIPLET)
