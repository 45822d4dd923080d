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


# ------------------------------------------------------- typical wrong answers
def _expansion(x, cross=-2.0, clamp=True, diagonal=True):
    sq = np.sum(x**2, axis=1)
    d2 = sq[:, None] + sq[None, :] + cross * x @ x.T
    d = np.sqrt(np.maximum(d2, 0.0) if clamp else d2)
    if diagonal:
        np.fill_diagonal(d, 0.0)
    return d


def _contrastive(d, y, margin, push=lambda m, d: 0.5 * np.maximum(0.0, m - d) ** 2,
                 half=0.5, reduce=np.mean):
    return float(reduce((1 - y) * half * d**2 + y * (half / 0.5) * push(margin, d)))


def _triplet_terms(x, t, margin, squared=False, negative_from=0):
    d_ap = np.sum((x[t[:, 0]] - x[t[:, 1]]) ** 2, axis=1)
    d_an = np.sum((x[t[:, negative_from]] - x[t[:, 2]]) ** 2, axis=1)
    return (d_ap - d_an if squared else np.sqrt(d_ap) - np.sqrt(d_an)) + margin


def _active_only(x, t, margin):
    terms = np.maximum(_triplet_terms(x, t, margin), 0.0)
    return float(terms[terms > 0].mean()) if np.any(terms > 0) else 0.0


def _pk(**wrong):
    def counts(B, K):
        right = pk_counts(B, K)
        return {key: wrong[key](B, K) if key in wrong else value for key, value in right.items()}
    return counts


def _hard(d, labels, pos_pick=np.argmax, neg_pick=np.argmin, self_positive=False,
          last=False, neg_fill=np.inf, pos_mask=True, skip_no_positive=True, skip_no_negative=True):
    pos, neg = _masks(labels)
    if self_positive:
        pos = labels[:, None] == labels[None, :]
    anchors = np.arange(len(labels))
    keep = np.ones(len(labels), dtype=bool)
    if skip_no_positive:
        keep &= pos.any(axis=1)
    if skip_no_negative:
        keep &= neg.any(axis=1)
    flip = (lambda m: m[:, ::-1]) if last else (lambda m: m)
    unflip = (lambda i: len(labels) - 1 - i) if last else (lambda i: i)
    pos_fill = -np.inf if pos_pick is np.argmax else np.inf
    p = unflip(pos_pick(flip(np.where(pos, d, pos_fill) if pos_mask else d), axis=1))
    n_fill = neg_fill if neg_pick is np.argmin else -np.inf
    n = unflip(neg_pick(flip(np.where(neg, d, n_fill)), axis=1))
    return anchors[keep], p[keep], n[keep]


def _semi_hard_closest_fallback(d, labels):
    pos, neg = _masks(labels)
    rows = []
    for a, p in zip(*np.nonzero(pos & neg.any(axis=1)[:, None])):
        negatives = np.flatnonzero(neg[a])
        farther = negatives[d[a, negatives] > d[a, p]]
        pool = farther if farther.size else negatives
        rows.append((a, p, pool[np.argmin(d[a, pool])]))
    rows = np.array(rows, dtype=int).reshape(-1, 3)
    return rows[:, 0], rows[:, 1], rows[:, 2]


def _semi_hard_no_fallback(d, labels):
    """argmin over the farther negatives, +inf elsewhere: index 0 when there is none."""
    pos, neg = _masks(labels)
    a, p = np.nonzero(pos & neg.any(axis=1)[:, None])
    farther = neg[a] & (d[a] > d[a, p][:, None])
    return a, p, np.argmin(np.where(farther, d[a], np.inf), axis=1)


def _semi_hard_any_negative(d, labels):
    pos, neg = _masks(labels)
    a, p = np.nonzero(pos & neg.any(axis=1)[:, None])
    return a, p, np.argmin(np.where(neg, d, np.inf), axis=1)[a]


def _semi_hard_self_positive(d, labels):
    pos, neg = _masks(labels)
    triplets = []
    for a in np.flatnonzero(neg.any(axis=1)):
        for p in np.flatnonzero(labels == labels[a]):
            negatives = np.flatnonzero(neg[a])
            farther = negatives[d[a, negatives] > d[a, p]]
            n = farther[np.argmin(d[a, farther])] if farther.size else \
                negatives[np.argmax(d[a, negatives])]
            triplets.append((a, p, n))
    t = np.array(triplets, dtype=int).reshape(-1, 3)
    return t[:, 0], t[:, 1], t[:, 2]


def _semi_hard_per_anchor(d, labels):
    """Only each anchor's first positive pair."""
    a, p, n = semi_hard_miner(d, labels)
    first = np.unique(a, return_index=True)[1]
    return a[first], p[first], n[first]


def _by_positive(miner):
    def mine(d, labels):
        a, p, n = miner(d, labels)
        order = np.lexsort((a, p))
        return a[order], p[order], n[order]
    return mine


def _collapse(strict=True, both=True, absolute=True, use_spread=True, use_stuck=True,
              last=False, offset=0):
    def detect(h):
        lt = (lambda x, y: x < y) if strict else (lambda x, y: x <= y)
        flagged = []
        for e, (loss, spread, pos, neg) in enumerate(zip(
                h["loss"], h["spread"], h["mean_positive_distance"], h["mean_negative_distance"])):
            gap = abs(neg - pos) if absolute else neg - pos
            near, flat = lt(abs(loss - h["stuck_at"]), 0.02 * h["stuck_at"]), lt(gap, 0.05 * h["stuck_at"])
            stuck = (near and flat) if both else (near or flat)
            if (use_spread and lt(spread, 0.05 * h["initial_spread"])) or (use_stuck and stuck):
                flagged.append(e + offset)
        return (flagged[-1] if last else flagged[0]) if flagged else None
    return detect


def _retrieval(r_offset=0, cut=True, by_hits=False, first=0, zero_r_nan=False):
    def metrics(q, ranked):
        match = ranked == q
        r = int(match.sum()) + r_offset
        p1 = float(match[first]) if len(match) > first else 0.0
        if r == 0 and not zero_r_nan:
            return {"precision_at_1": p1, "map_at_r": 0.0}
        kept = match[:r] if cut else match
        precisions = np.cumsum(kept) / np.arange(1, len(kept) + 1)
        divisor = match[:r].sum() if by_hits else r
        return {"precision_at_1": p1, "map_at_r": float(np.sum(precisions * kept) / divisor)}
    return metrics


def _angular(t_of=lambda g: np.tan(np.radians(g)) ** 2, push=lambda t, a, p, n: 4 * t * (a + p) @ n,
             pull=lambda t, a, p: 2 * (1 + t) * a @ p, outer=lambda f: float(np.logaddexp(0.0, f))):
    return lambda a, p, n, g: outer(push(t_of(g), a, p, n) - pull(t_of(g), a, p))


def _nt_xent(drop=lambda s, a, p: np.delete(s, a), scale=lambda s, t: s / t, sign=1.0, stable=True):
    def row(s, a, p, t):
        z = scale(drop(s, a, p), t)
        m = z.max() if stable else 0.0
        return sign * float(m + np.log(np.sum(np.exp(z - m))) - scale(s[p], t))
    return row


def _lse(z):
    return float(z.max() + np.log(np.sum(np.exp(z - z.max()))))


WRONG = [
    # pairwise_distances
    ("pairwise_distances", lambda x: _expansion(x, clamp=False), "NaN where a = b"),
    ("pairwise_distances", lambda x: pairwise_distances(x) ** 2, "squared distances"),
    ("pairwise_distances", lambda x: _expansion(x, cross=+2.0), "minus sign"),
    ("pairwise_distances", lambda x: _expansion(x, cross=-1.0), "the cross term is 2 a·b"),
    ("pairwise_distances", lambda x: _expansion(x, diagonal=False), "diagonal must be exactly 0"),
    ("pairwise_distances", lambda x: np.sqrt(np.sum((x[:, None] - x[None]) ** 2, axis=0)),
     "expected an array of shape"),
    # contrastive_loss
    ("contrastive_loss", lambda d, y, m: contrastive_loss(d, 1 - y, m), "swapped convention"),
    ("contrastive_loss", lambda d, y, m: _contrastive(d, y, m, reduce=np.sum), "you summed"),
    ("contrastive_loss", lambda d, y, m: _contrastive(d, y, m, half=1.0), "factor 1/2"),
    ("contrastive_loss", lambda d, y, m: _contrastive(d, y, m, push=lambda m, d: 0.5 * (m - d) ** 2),
     "hinge max(0, m - d) is missing"),
    ("contrastive_loss",
     lambda d, y, m: _contrastive(d, y, m, push=lambda m, d: 0.5 * np.maximum(0, m**2 - d**2)),
     "square after the hinge"),
    ("contrastive_loss", lambda d, y, m: _contrastive(d, y, m, push=lambda m, d: 0.5 * np.maximum(0, m - d)),
     "push term is squared"),
    # triplet_loss
    ("triplet_loss", lambda x, t, m: float(np.mean(np.maximum(_triplet_terms(x, t, m), 0.0))),
     "empty array is NaN"),
    ("triplet_loss", _active_only, "active triplets only"),
    ("triplet_loss", lambda x, t, m: float(np.mean(np.maximum(_triplet_terms(x, t, m, squared=True), 0)))
     if len(t) else 0.0, "squared distances"),
    ("triplet_loss", lambda x, t, m: float(np.mean(_triplet_terms(x, t, m))) if len(t) else 0.0,
     "hinge max(0, ·) is missing"),
    ("triplet_loss", lambda x, t, m: float(np.mean(np.maximum(m - _triplet_terms(x, t, 0.0), 0)))
     if len(t) else 0.0, "sign is swapped"),
    ("triplet_loss", lambda x, t, m: float(np.sum(np.maximum(_triplet_terms(x, t, m), 0.0))),
     "you summed"),
    ("triplet_loss", lambda x, t, m: float(np.mean(np.maximum(_triplet_terms(x, t, m, negative_from=1), 0)))
     if len(t) else 0.0, "measured from the anchor"),
    # pk_counts
    ("pk_counts", _pk(positives_per_anchor=lambda B, K: K), "an anchor has K - 1 positives"),
    ("pk_counts", _pk(negatives_per_anchor=lambda B, K: B - 1), "are positives, not negatives"),
    ("pk_counts", _pk(negatives_per_anchor=lambda B, K: B - K + 1), "not its own negative either"),
    ("pk_counts", _pk(negatives_per_anchor=lambda B, K: B // K - 1), "count items, not classes"),
    ("pk_counts", _pk(triplets_per_anchor=lambda B, K: K - 1 + B - K), "multiply the counts"),
    ("pk_counts", _pk(triplets_per_anchor=lambda B, K: K * (B - K)), "(K - 1)(B - K) triplets per anchor"),
    ("pk_counts", _pk(triplets_per_anchor=lambda B, K: B * (K - 1) * (B - K)), "one anchor has"),
    ("pk_counts", _pk(triplets_per_batch=lambda B, K: (K - 1) * (B - K)), "every one of the B items is an anchor, so"),
    ("pk_counts", _pk(triplets_per_batch=lambda B, K: B // K * (K - 1) * (B - K)), "not one per class"),
    ("pk_counts", _pk(triplets_per_batch=lambda B, K: B * (K - 1) * (B - K) // 2), "do not halve"),
    ("pk_counts", lambda B, K: {"positives": K - 1}, "has no key 'positives_per_anchor'"),
    # batch_hard_miner
    ("batch_hard_miner", lambda d, y: _hard(d, y, self_positive=True), "counted as its own positive"),
    ("batch_hard_miner", lambda d, y: _hard(d, y, pos_pick=np.argmin), "you took the closest positive"),
    ("batch_hard_miner", lambda d, y: _hard(d, y, neg_pick=np.argmax), "you took the farthest negative"),
    ("batch_hard_miner", lambda d, y: _hard(d, y, last=True), "ties go to the lowest index"),
    ("batch_hard_miner", lambda d, y: _hard(d, y, neg_fill=0.0), "chosen negative has the anchor's label"),
    ("batch_hard_miner", lambda d, y: _hard(d, y, pos_mask=False), "chosen positive has another label"),
    ("batch_hard_miner", lambda d, y: _hard(d, y, skip_no_positive=False), "only item of its class"),
    ("batch_hard_miner", lambda d, y: _hard(d, y, skip_no_negative=False), "no negative (every item shares"),
    ("batch_hard_miner", lambda d, y: tuple(t[::-1] for t in batch_hard_miner(d, y)), "wrong order"),
    ("batch_hard_miner", lambda d, y: np.stack(batch_hard_miner(d, y), 1), "tuple of three arrays"),
    # semi_hard_miner
    ("semi_hard_miner", lambda d, y: semi_hard_miner(d, y, strict=False), "non-strict inequality"),
    ("semi_hard_miner", _semi_hard_closest_fallback, "FARTHEST negative of a"),
    ("semi_hard_miner", lambda d, y: semi_hard_miner(d, y, fallback=False), "it is not dropped"),
    ("semi_hard_miner", _semi_hard_no_fallback, "missing fallback"),
    ("semi_hard_miner", _semi_hard_any_negative, "batch-hard's choice"),
    ("semi_hard_miner", _semi_hard_self_positive, "paired with itself"),
    ("semi_hard_miner", _semi_hard_per_anchor, "one triplet per positive PAIR"),
    ("semi_hard_miner", _by_positive(semi_hard_miner), "wrong order"),
    # collapse_detector
    ("collapse_detector", _collapse(offset=1), "off by one"),
    ("collapse_detector", _collapse(last=True), "LAST collapsed epoch"),
    ("collapse_detector", _collapse(strict=False), "thresholds are strict"),
    ("collapse_detector", _collapse(both=False), "go with `and`"),
    ("collapse_detector", _collapse(absolute=False), "absolute value"),
    ("collapse_detector", _collapse(use_spread=False), "alternatives (`or`)"),
    ("collapse_detector", _collapse(use_stuck=False), "a stuck loss with no gap is collapse too"),
    ("collapse_detector", lambda h: _collapse()(h) is not None, "not True/False"),
    # retrieval_metrics
    ("retrieval_metrics", _retrieval(zero_r_nan=True), "R = 0"),
    ("retrieval_metrics", lambda q, r: {"precision_at_1": float(r[0] == q),
                                        "map_at_r": float(np.mean(r[:np.sum(r == q)] == q))
                                        if np.any(r == q) else 0.0}, "that is R-precision"),
    ("retrieval_metrics", _retrieval(cut=False), "stops at rank R"),
    ("retrieval_metrics", _retrieval(by_hits=True), "not by the number of hits"),
    ("retrieval_metrics", _retrieval(first=1), "ranked_labels[0]"),
    ("retrieval_metrics", _retrieval(r_offset=1), "do not add 1"),
    ("retrieval_metrics", lambda q, r: {"p_at_1": 1.0, "map_at_r": 1.0}, "has no key 'precision_at_1'"),
    # npairs_row
    ("npairs_row", lambda a, p, i: float(np.log(np.sum(np.exp(p @ a))) - (p @ a)[i]), "overflowed"),
    ("npairs_row", lambda a, p, i: -npairs_row(a, p, i), "MINUS log softmax"),
    ("npairs_row", lambda a, p, i: _lse(np.delete(p @ a, i)) - (p @ a)[i], "ALL N positives"),
    ("npairs_row", lambda a, p, i: npairs_row(a / np.linalg.norm(a), p / np.linalg.norm(p, axis=1, keepdims=True), i),
     "plain dot products"),
    ("npairs_row", lambda a, p, i: _lse(p @ a), "subtract the positive's logit"),
    # angular_triplet
    ("angular_triplet", _angular(t_of=lambda g: np.tan(g) ** 2), "alpha is in degrees"),
    ("angular_triplet", _angular(t_of=lambda g: np.tan(np.radians(g))), "tan SQUARED"),
    ("angular_triplet", _angular(push=lambda t, a, p, n: 4 * t + (a + p) @ n), "a + typed for a ×"),
    ("angular_triplet", _angular(push=lambda t, a, p, n: 4 * t * (a * p) @ n), "a × typed for a +"),
    ("angular_triplet", _angular(pull=lambda t, a, p: 2 * t * a @ p), "not 2 t a·p"),
    ("angular_triplet", _angular(outer=float), "not f itself"),
    ("angular_triplet", _angular(outer=lambda f: max(0.0, float(f))), "not the hinge"),
    ("angular_triplet", _angular(outer=lambda f: float(np.log(1 + np.exp(f)))), "overflowed"),
    ("angular_triplet", _angular(pull=lambda t, a, p: -2 * (1 + t) * a @ p), "MINUS 2 (1 + t)"),
    # nt_xent_row
    ("nt_xent_row", _nt_xent(drop=lambda s, a, p: s), "anchor itself is not in the denominator"),
    ("nt_xent_row", _nt_xent(scale=lambda s, t: s), "temperature is forgotten"),
    ("nt_xent_row", _nt_xent(scale=lambda s, t: s * t), "do not multiply"),
    ("nt_xent_row", _nt_xent(drop=lambda s, a, p: np.delete(s, [a, p])), "positive belongs in the denominator"),
    ("nt_xent_row", _nt_xent(sign=-1.0), "MINUS the log"),
    ("nt_xent_row", _nt_xent(stable=False), "overflowed"),
]


@pytest.mark.parametrize("name, fn, hint", WRONG, ids=[f"{n}-{h[:30]}" for n, _, h in WRONG])
def test_typical_mistake_is_rejected_with_its_hint(capsys, name, fn, hint):
    out = grade(capsys, name, fn)
    assert out.startswith(f"✗ {name}: case "), out
    assert hint in out, out
    assert "Traceback" not in out and "File " not in out
    assert not ex.passed(name)


def test_every_exercise_has_typical_mistakes_tested():
    assert {name for name, _, _ in WRONG} == set(ex.EXERCISES)


# ------------------------------------------- the graders' answers = the library's
def _cases(name):
    return ex.EXERCISES[name].graded_cases()


def test_distance_reference_matches_course_lib():
    from course_lib.distances import pairwise_distances as library
    for case, expected in _cases("pairwise_distances"):
        x = case.args["x"]
        scale = max(1.0, float(np.abs(x).max()))
        np.testing.assert_allclose(library(x).numpy(), expected, atol=1e-3 * scale)
        assert np.all(np.diag(expected) == 0.0) and not np.isnan(expected).any()


def test_contrastive_reference_matches_course_lib_on_every_pair_of_a_batch():
    from course_lib.losses import contrastive_loss as library
    rng = np.random.default_rng(0)
    for margin in (0.5, 1.0, 2.0):
        labels, x = rng.integers(0, 3, 7), rng.normal(size=(7, 3))
        i, j = np.nonzero(~np.eye(7, dtype=bool))               # the B(B-1) ordered pairs
        d = np.linalg.norm(x[i] - x[j], axis=1)
        y = (labels[i] != labels[j]).astype(int)                # Hadsell: Y = 1 dissimilar
        expected = ex.EXERCISES["contrastive_loss"].reference(d, y, margin)
        assert float(library(labels, x, margin=margin)) == pytest.approx(expected, rel=1e-4)


def test_triplet_reference_matches_course_lib_on_batch_hard_triplets():
    from course_lib.losses import triplet_loss as library
    from course_lib.mining import mine_triplets
    rng = np.random.default_rng(1)
    for margin in (0.2, 1.0):
        labels, x = np.repeat(np.arange(3), 3), rng.normal(size=(9, 2))
        triplets = np.stack([t.numpy() for t in mine_triplets(labels, x, "hard")], axis=1)
        expected = ex.EXERCISES["triplet_loss"].reference(x, triplets, margin)
        assert float(library(labels, x, margin=margin, mining="hard")) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("name, strategy", [("batch_hard_miner", "hard"), ("semi_hard_miner", "semi-hard")])
def test_library_miners_agree_with_the_loop_references(name, strategy):
    """The grader's expected triplets (course_lib) = tests/reference.py's loops, ties included."""
    from tests import reference
    for case, expected in _cases(name):
        loops = reference.mine_triplets_from_distances(case.args["labels"], case.args["d"], strategy)
        assert [tuple(map(int, t)) for t in loops] == list(zip(*(e.tolist() for e in expected))), case.note


def test_miner_cases_hold_the_edge_cases():
    cases = [c for c, _ in _cases("semi_hard_miner")]
    ties = no_fallback = False
    for case in cases:
        d, labels = case.args["d"], case.args["labels"]
        for a, p in zip(*np.nonzero((labels[:, None] == labels) & ~np.eye(len(labels), dtype=bool))):
            negatives = labels != labels[a]
            ties |= bool(np.any(negatives & (d[a] == d[a, p])))
            no_fallback |= bool(negatives.any() and not np.any(negatives & (d[a] > d[a, p])))
    assert ties and no_fallback
    notes = {c.note for c in cases}
    assert {"a single class: no negative", "an anchor with no positive (the only 2)",
            "labels with gaps"} <= notes


def test_collapse_reference_is_detect_collapse():
    """The grader asks course_lib.training.detect_collapse; the solution here is written from the rule."""
    for case, expected in _cases("collapse_detector"):
        assert collapse_detector(case.args["history"]) == expected
    assert {e for _, e in _cases("collapse_detector")} >= {None, 0, 1, 2}


def test_retrieval_reference_matches_course_lib_evaluate():
    from course_lib.retrieval import evaluate
    for case, expected in _cases("retrieval_metrics"):
        q, ranked = case.args["query_label"], case.args["ranked_labels"]
        if not np.any(ranked == q):
            assert expected == {"precision_at_1": 0.0, "map_at_r": 0.0}
            continue
        gallery = np.arange(1, len(ranked) + 1, dtype=np.float32)[:, None]   # ranked by distance to 0
        metrics = evaluate(np.zeros((1, 1), np.float32), [q], gallery, ranked, ks=(1,))
        assert metrics["precision_at_1"] == pytest.approx(expected["precision_at_1"])
        assert metrics["map_at_r"] == pytest.approx(expected["map_at_r"])


def test_npairs_row_reference_matches_course_lib():
    from course_lib.losses import npairs_loss
    rng = np.random.default_rng(2)
    anchors, positives = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    x = np.stack([anchors, positives], axis=1).reshape(8, 3)       # a_0, p_0, a_1, p_1, ...
    labels = np.repeat(np.arange(4), 2)
    rows = [ex.EXERCISES["npairs_row"].reference(anchors[i], positives, i) for i in range(4)]
    assert float(npairs_loss(labels, x, l2_reg=0.0)) == pytest.approx(np.mean(rows), rel=1e-4)


def test_angular_reference_matches_course_lib():
    from course_lib.losses import angular_loss
    for case, expected in _cases("angular_triplet"):
        a, p, n, alpha = case.args.values()
        library = float(angular_loss([0, 0, 1], np.stack([a, p, n]), alpha_degrees=alpha))
        assert library == pytest.approx(expected, rel=1e-3, abs=1e-5), case.note


def test_nt_xent_row_reference_matches_course_lib():
    from course_lib.losses import nt_xent_loss
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 4))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.repeat(np.arange(3), 2)                              # two views per image
    sims = unit @ unit.T
    rows = [ex.EXERCISES["nt_xent_row"].reference(sims[a], a, a ^ 1, 0.5) for a in range(6)]
    assert float(nt_xent_loss(labels, x, temperature=0.5)) == pytest.approx(np.mean(rows), rel=1e-4)


# ------------------------------------------------------------ the report itself
def test_exception_in_learner_code_shows_type_and_message_only(capsys):
    def broken(x):
        return x[:, :, 5]
    out = grade(capsys, "pairwise_distances", broken)
    assert "case 1 of" in out and "your function raised IndexError: too many indices" in out
    assert "Traceback" not in out and "line " not in out


def test_missing_return_is_named(capsys):
    out = grade(capsys, "contrastive_loss", lambda d, y, m: None)
    assert "returned None: is the `return` missing?" in out


def test_learner_cannot_spoil_the_cases_by_modifying_inputs(capsys):
    def vandal(d, labels):
        d[:] = 0.0
        labels[:] = 0
        return batch_hard_miner(d, labels)
    grade(capsys, "batch_hard_miner", vandal)
    out = grade(capsys, "batch_hard_miner", batch_hard_miner)
    assert out.startswith("✓"), out


def test_numbers_are_shown_without_float32_noise(capsys):
    out = grade(capsys, "contrastive_loss", lambda d, y, m: np.float32(0.3))
    assert "received: 0.3\n" in out and "0.300000" not in out


def test_unknown_exercise_and_non_function(capsys):
    assert "no exercise is called 'nope'" in grade(capsys, "nope", pairwise_distances)
    assert "expected a function" in grade(capsys, "pairwise_distances", 3)


def test_exercise_records():
    for name, exercise in ex.EXERCISES.items():
        assert exercise.name == name and exercise.signature.startswith(name + "(")
        assert exercise.lesson in {"01", "02", "03", "04", "05", "06", "07", "08", "10"}
        assert callable(exercise.reference) and exercise.mistakes


# ---------------------------------------------------------------------- check()
@pytest.mark.parametrize("answer, expected, verdict", [
    (..., 28, "✎ negatives: not done yet"),
    (28, 28, "✓ negatives: 28 is right. Because B - K."),
    (27, 28, "✗ negatives: you said 27; the answer is 28. Because B - K."),
    (0.3000001013278961, 0.3, "✓ negatives: 0.3 is right."),
    (" Hard ", "hard", "✓ negatives: "),
    ({"b", "a"}, {"a", "b"}, "✓ negatives: "),
    ((1, ...), (1, 2), "✎ negatives: not done yet"),
    ((1.0, 2.0), (1, 2), "✓"),
    ([1, 2, 3], np.array([1, 2]), "✗ negatives: you said [1, 2, 3]; the answer is [1 2]."),
    ("yes", 3, "✗ negatives: you said yes; the answer is 3."),
    (object(), 3, "✗ negatives: you said"),
])
def test_check_never_raises_and_returns_none(capsys, answer, expected, verdict):
    assert ex.check(answer, expected, "negatives", "Because B - K.") is None
    out = capsys.readouterr().out
    assert out.startswith(verdict), out
    assert out.count("\n") == 1


def test_check_keeps_the_older_call_style(capsys):
    assert ex.check(0.16, expected=0.08, what="loss", hint="Halve it.", tolerance=1e-3) is None
    assert capsys.readouterr().out == "✗ loss: you said 0.16; the answer is 0.08. Halve it.\n"
    ex.check(0.0801, expected=0.08, what="loss", tolerance=1e-2)
    assert capsys.readouterr().out.startswith("✓ loss: 0.0801 is right.")


def test_nan_from_another_cause_gets_no_overflow_hint(capsys):
    out = grade(capsys, "npairs_row", lambda a, p, i: float("nan"))
    assert "case 1 of" in out and "Hint" not in out


def test_importing_the_exercises_does_not_load_tensorflow():
    import subprocess
    import sys
    code = "import sys, course_lib.exercises; print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
