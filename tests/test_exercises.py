"""The graders of course_lib.exercises: right answers pass, templates are "not done yet",
and each typical wrong answer is rejected with its own hint.

The reference solutions here are written as a teacher would, in NumPy only,
without calling course_lib (the lessons carry their own, graded in CI).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from course_lib import exercises as ex


# ------------------------------------------------------------------ solutions
def pairwise_distances(x):
    diff = x[:, None, :] - x[None, :, :]          # [B, B, D]: x_i - x_j
    return np.sqrt(np.sum(diff**2, axis=-1))      # exact 0 on the diagonal, never NaN


def pairwise_distances_expansion(x):
    sq = np.sum(x**2, axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * x @ x.T  # ||a||^2 + ||b||^2 - 2 a.b
    d = np.sqrt(np.maximum(d2, 0.0))                # rounding can make d2 slightly negative
    np.fill_diagonal(d, 0.0)
    return d


def contrastive_loss(d, y, margin):
    similar = 0.5 * d**2                                  # Y = 0: pull together
    dissimilar = 0.5 * np.maximum(0.0, margin - d) ** 2   # Y = 1: push beyond the margin
    return float(np.mean((1 - y) * similar + y * dissimilar))


def triplet_loss(x, triplets, margin):
    if len(triplets) == 0:
        return 0.0
    a, p, n = triplets[:, 0], triplets[:, 1], triplets[:, 2]
    d_ap = np.linalg.norm(x[a] - x[p], axis=1)
    d_an = np.linalg.norm(x[a] - x[n], axis=1)
    return float(np.mean(np.maximum(0.0, d_ap - d_an + margin)))


def pk_counts(B, K):
    positives, negatives = K - 1, B - K
    return {"positives_per_anchor": positives, "negatives_per_anchor": negatives,
            "triplets_per_anchor": positives * negatives,
            "triplets_per_batch": B * positives * negatives}


def _masks(labels):
    same = labels[:, None] == labels[None, :]
    return same & ~np.eye(len(labels), dtype=bool), ~same


def batch_hard_miner(d, labels):
    pos, neg = _masks(labels)
    anchors = np.flatnonzero(pos.any(axis=1) & neg.any(axis=1))
    hardest_p = np.argmax(np.where(pos, d, -np.inf), axis=1)   # farthest positive
    hardest_n = np.argmin(np.where(neg, d, np.inf), axis=1)    # closest negative
    return anchors, hardest_p[anchors], hardest_n[anchors]


def semi_hard_miner(d, labels, strict=True, fallback=True):
    pos, neg = _masks(labels)
    triplets = []
    for a, p in zip(*np.nonzero(pos & neg.any(axis=1)[:, None])):
        negatives = np.flatnonzero(neg[a])
        farther = negatives[d[a, negatives] > d[a, p]] if strict else \
            negatives[d[a, negatives] >= d[a, p]]
        if farther.size:
            triplets.append((a, p, farther[np.argmin(d[a, farther])]))
        elif fallback:
            triplets.append((a, p, negatives[np.argmax(d[a, negatives])]))
    triplets = np.array(triplets, dtype=int).reshape(-1, 3)
    return triplets[:, 0], triplets[:, 1], triplets[:, 2]


def collapse_detector(history):
    stuck_at, initial = history["stuck_at"], history["initial_spread"]
    for epoch, (loss, spread, pos, neg) in enumerate(zip(
            history["loss"], history["spread"], history["mean_positive_distance"],
            history["mean_negative_distance"])):
        shrunk = spread < 0.05 * initial
        stuck = abs(loss - stuck_at) < 0.02 * stuck_at and abs(neg - pos) < 0.05 * stuck_at
        if shrunk or stuck:
            return epoch
    return None


def retrieval_metrics(query_label, ranked_labels):
    match = ranked_labels == query_label
    r = int(match.sum())
    if r == 0:
        return {"precision_at_1": float(match[0]), "map_at_r": 0.0}
    precision_at = np.cumsum(match[:r]) / np.arange(1, r + 1)   # P(i) for i = 1..R
    return {"precision_at_1": float(match[0]),
            "map_at_r": float(np.sum(precision_at * match[:r]) / r)}


def npairs_row(anchor, positives, i):
    logits = positives @ anchor
    m = logits.max()
    return float(m + np.log(np.sum(np.exp(logits - m))) - logits[i])


def angular_triplet(a, p, n, alpha_degrees):
    t = np.tan(np.radians(alpha_degrees)) ** 2
    f = 4 * t * (a + p) @ n - 2 * (1 + t) * a @ p
    return float(np.logaddexp(0.0, f))


def nt_xent_row(similarities, anchor, positive, temperature):
    z = np.delete(similarities, anchor) / temperature
    positive_logit = similarities[positive] / temperature
    m = z.max()
    return float(m + np.log(np.sum(np.exp(z - m))) - positive_logit)


SOLUTIONS = {
    "pairwise_distances": pairwise_distances,
    "contrastive_loss": contrastive_loss,
    "triplet_loss": triplet_loss,
    "pk_counts": pk_counts,
    "batch_hard_miner": batch_hard_miner,
    "semi_hard_miner": semi_hard_miner,
    "collapse_detector": collapse_detector,
    "retrieval_metrics": retrieval_metrics,
    "npairs_row": npairs_row,
    "angular_triplet": angular_triplet,
    "nt_xent_row": nt_xent_row,
}


def template(*args):
    raise NotImplementedError("your code")


def grade(capsys, name, fn):
    result = ex.grade(name, fn)
    out = capsys.readouterr().out
    assert result is None
    return out


# ------------------------------------------------------- right, unfinished
def test_every_exercise_has_a_solution_here():
    assert set(SOLUTIONS) == set(ex.EXERCISES)


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_reference_solution_passes(capsys, name):
    out = grade(capsys, name, SOLUTIONS[name])
    assert out.startswith(f"✓ {name}: all "), out
    assert ex.passed(name)
    assert len(ex.EXERCISES[name].graded_cases()) >= 10


def test_expansion_with_clamp_and_zeroed_diagonal_passes(capsys):
    out = grade(capsys, "pairwise_distances", pairwise_distances_expansion)
    assert out.startswith("✓"), out


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_template_is_not_done_yet(capsys, name):
    ex.grade(name, SOLUTIONS[name])
    capsys.readouterr()
    out = grade(capsys, name, template)
    assert out.startswith(f"✎ {name}: not done yet"), out
    assert out.count("\n") == 1
    assert not ex.passed(name)
