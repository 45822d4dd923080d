"""Exercises of lesson 04: P x K counts, the batch-hard and the semi-hard miner.

The miners are graded against :func:`course_lib.mining.mine_triplets_from_distances`
(TensorFlow, imported on first use); the NumPy miners below only compute the
answers that typical mistakes give.
"""

from __future__ import annotations

import numpy as np

from course_lib.exercises._grading import Case, Exercise, Mistake
from course_lib.exercises._kinds import Record, Triplets


# ------------------------------------------------------------------ P x K counts
def pk_counts(B, K):
    """Counts of a P x K batch (P = B / K classes, K samples each)."""
    per_anchor = (K - 1) * (B - K)
    return {"positives_per_anchor": K - 1, "negatives_per_anchor": B - K,
            "triplets_per_anchor": per_anchor, "triplets_per_batch": B * per_anchor}


def _key_is(key, formula):
    """Spots a wrong ``key`` whose value is ``formula(B, K)``."""
    def spots(got, args, expected):
        wrong = formula(args["B"], args["K"])
        return wrong != expected[key] and np.isclose(got[key], wrong)
    return spots


_PK_KEYS = ("positives_per_anchor", "negatives_per_anchor", "triplets_per_anchor", "triplets_per_batch")

PK_COUNTS = Exercise(
    name="pk_counts",
    lesson="04",
    signature=("pk_counts(B, K) -> dict: positives_per_anchor, negatives_per_anchor, "
               "triplets_per_anchor, triplets_per_batch of a batch of P = B / K classes x K samples"),
    reference=pk_counts,
    cases=lambda: [Case({"B": b, "K": k}, note) for b, k, note in (
        (32, 4, "the lesson's batch"), (8, 2, ""), (6, 3, ""), (12, 4, ""), (64, 8, ""),
        (60, 6, ""), (10, 1, "K = 1: no positive"), (8, 8, "P = 1: a single class"),
        (2, 2, ""), (100, 10, ""), (96, 32, ""), (15, 5, ""))],
    kind=Record(_PK_KEYS, counts=True),
    mistakes=(
        Mistake("the anchor is not its own positive: an anchor has K - 1 positives.",
                spots=_key_is("positives_per_anchor", lambda B, K: K)),
        Mistake("the K - 1 other items of the anchor's class are positives, not negatives: "
                "an anchor has B - K negatives.",
                spots=_key_is("negatives_per_anchor", lambda B, K: B - 1)),
        Mistake("the anchor is not its own negative either: B - K negatives (the other P - 1 classes).",
                spots=_key_is("negatives_per_anchor", lambda B, K: B - K + 1)),
        Mistake("count items, not classes: the P - 1 other classes hold (P - 1) K = B - K negatives.",
                spots=_key_is("negatives_per_anchor", lambda B, K: B // K - 1)),
        Mistake("a triplet picks one positive AND one negative: multiply the counts, (K - 1)(B - K).",
                spots=_key_is("triplets_per_anchor", lambda B, K: (K - 1) + (B - K))),
        Mistake("the anchor is not its own positive: (K - 1)(B - K) triplets per anchor.",
                spots=_key_is("triplets_per_anchor", lambda B, K: K * (B - K))),
        Mistake("per-batch vs per-anchor mixed up: B (K - 1)(B - K) is the count for the whole "
                "batch; one anchor has (K - 1)(B - K).",
                spots=_key_is("triplets_per_anchor", lambda B, K: B * (K - 1) * (B - K))),
        Mistake("per-batch vs per-anchor mixed up: every one of the B items is an anchor, so the "
                "batch holds B (K - 1)(B - K) triplets.",
                spots=_key_is("triplets_per_batch", lambda B, K: (K - 1) * (B - K))),
        Mistake("every one of the B items is an anchor, not one per class: B (K - 1)(B - K).",
                spots=_key_is("triplets_per_batch", lambda B, K: B // K * (K - 1) * (B - K))),
        Mistake("(a, p, n) and (p, a, n) are different triplets (different anchors): do not halve.",
                spots=_key_is("triplets_per_batch", lambda B, K: B * (K - 1) * (B - K) / 2)),
    ),
)


# ---------------------------------------------------------------------- miners
def _library_miner(strategy):
    def mine(d, labels):
        from course_lib.mining import mine_triplets_from_distances  # TensorFlow: on first use
        triplets = mine_triplets_from_distances(labels, d, strategy)
        return tuple(t.numpy().astype(np.int64) for t in triplets)
    mine.__name__ = f"mine_{strategy.replace('-', '_')}"
    mine.__doc__ = f'course_lib.mining.mine_triplets_from_distances(labels, d, "{strategy}")'
    return mine


def _masks(labels, self_positive=False):
    same = labels[:, None] == labels[None, :]
    pos = same if self_positive else same & ~np.eye(len(labels), dtype=bool)
    return pos, ~same


def _pick(d, mask, largest, last=False):
    """Per row, the index of the largest (or smallest) masked entry; ties: first (or last) index."""
    values = np.where(mask, d, -np.inf if largest else np.inf)
    if last:
        values = values[:, ::-1]
    index = values.argmax(axis=1) if largest else values.argmin(axis=1)
    return d.shape[1] - 1 - index if last else index


def numpy_hard(d, labels, farthest_positive=True, closest_negative=True, self_positive=False, last=False):
    """Batch hard in NumPy; the keyword arguments give the variants of typical mistakes."""
    pos, neg = _masks(labels, self_positive)
    anchors = np.flatnonzero(pos.any(axis=1) & neg.any(axis=1))
    p = _pick(d, pos, largest=farthest_positive, last=last)
    n = _pick(d, neg, largest=not closest_negative, last=last)
    return anchors, p[anchors], n[anchors]


def numpy_semi_hard(d, labels, strict=True, fallback="farthest", self_positive=False, farther=True):
    """Semi-hard in NumPy; ``fallback``: "farthest", "closest" or "skip" (mistakes: the others)."""
    pos, neg = _masks(labels, self_positive)
    rows = []
    for a, p in zip(*np.nonzero(pos & neg.any(axis=1)[:, None])):
        negatives = np.flatnonzero(neg[a])
        beyond = d[a, negatives] > d[a, p] if strict else d[a, negatives] >= d[a, p]
        candidates = negatives[beyond] if farther else negatives
        if candidates.size:
            rows.append((a, p, candidates[np.argmin(d[a, candidates])]))
        elif fallback != "skip":
            pick = np.argmax if fallback == "farthest" else np.argmin
            rows.append((a, p, negatives[pick(d[a, negatives])]))
    rows = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return rows[:, 0], rows[:, 1], rows[:, 2]


def _rows(triplets):
    return list(zip(*(t.tolist() for t in triplets)))


def _own_positive(got, args, expected):
    return np.any(got[0] == got[1])


def _foreign(role):
    """Spots a positive with another label, or a negative with the anchor's label."""
    def spots(got, args, expected):
        labels, a, x = args["labels"], got[0], got[role]
        if np.any((a >= len(labels)) | (x >= len(labels)) | (a < 0) | (x < 0)):
            return False
        same = labels[a] == labels[x]
        return np.any(~same if role == 1 else same)
    return spots


def _extra_anchor(without):
    def spots(got, args, expected):
        pos, neg = _masks(args["labels"])
        lacking = ~pos.any(axis=1) if without == "positive" else ~neg.any(axis=1)
        extra = set(got[0].tolist()) - set(expected[0].tolist())
        return any(0 <= a < len(lacking) and lacking[a] for a in extra)
    return spots


def _same_set_other_order(got, args, expected):
    return sorted(_rows(got)) == sorted(_rows(expected)) and _rows(got) != _rows(expected)


def _fallback_missed(got, args, expected):
    """A differing triplet whose pair (a, p) has no negative farther than p."""
    d, labels = args["d"], args["labels"]
    if len(got[0]) != len(expected[0]):
        return False
    for a, p, n in zip(*expected):
        i = np.flatnonzero((got[0] == a) & (got[1] == p))
        if i.size and got[2][i[0]] != n:
            return not np.any((labels != labels[a]) & (d[a] > d[a, p]))
    return False


def _miner_cases(seed):
    """Distance matrices of points on an integer grid (exact ties), P x K batches and edge cases."""
    rng = np.random.default_rng(seed)

    def case(labels, note="", size=4):
        points = rng.integers(0, size, size=(len(labels), 2))
        d = np.sqrt(np.sum((points[:, None] - points[None]) ** 2, axis=-1)).round(3)
        return Case({"d": d, "labels": np.asarray(labels)}, note)

    cases = [
        case([0, 1, 0, 2, 1, 2], "P = 3 classes x K = 2"),
        case([3, 3, 7, 7, 42, 42, 3, 7], "labels with gaps"),
        case([5, 5, 5, 5], "a single class: no negative"),
        case([0, 0, 1, 1, 2], "an anchor with no positive (the only 2)"),
        case([0, 1, 2, 3], "no positive at all"),
        case([1, 0, 1, 0, 1, 0], "ties", size=2),
        case([2, 2, 2, 0, 0, 0, 1, 1, 1], "", size=6),
        Case({"d": np.array([[0.0, 1.0, 1.0, 2.0], [1.0, 0.0, 1.5, 1.0],
                             [1.0, 1.5, 0.0, 0.5], [2.0, 1.0, 0.5, 0.0]]),
              "labels": np.array([0, 0, 1, 1])}, "negatives exactly as far as the positive"),
    ]
    for _ in range(30):
        p, k = rng.integers(2, 4), rng.integers(2, 4)
        labels = rng.permutation(np.repeat(rng.choice(10, p, replace=False), k))
        cases.append(case(labels, size=int(rng.integers(3, 7))))
    return cases


_MINER_MISTAKES = (
    Mistake("the anchor was used as its own positive: a positive has the anchor's label and "
            "ANOTHER index (remove the diagonal from the mask: same & ~np.eye(B, dtype=bool)).",
            spots=_own_positive),
    Mistake("an anchor that is the only item of its class has no positive: it gives no "
            "triplet, skip it.", spots=_extra_anchor("positive")),
    Mistake("an anchor with no negative (every item shares its label) gives no triplet: skip it.",
            spots=_extra_anchor("negative")),
    Mistake("a chosen positive has another label than its anchor: before the argmax, fill "
            "the entries that are not positives with -np.inf (a fill of 0 can win).",
            spots=_foreign(1)),
    Mistake("a chosen negative has the anchor's label: before the argmin, fill the entries "
            "that are not negatives with np.inf (a fill of 0 always wins).",
            spots=_foreign(2)),
)

BATCH_HARD = Exercise(
    name="batch_hard_miner",
    lesson="04",
    signature=("batch_hard_miner(d, labels) -> (anchors, positives, negatives): per anchor with a "
               "positive and a negative, its farthest positive and closest negative"),
    reference=_library_miner("hard"),
    cases=lambda: _miner_cases(404),
    kind=Triplets(),
    mistakes=(
        Mistake("the anchor was counted as its own positive (the diagonal of the label mask): "
                "exclude i == j.", variant=lambda d, y: numpy_hard(d, y, self_positive=True)),
        Mistake("you took the closest positive; batch-hard takes the hardest one, the FARTHEST "
                "positive (argmax).", variant=lambda d, y: numpy_hard(d, y, farthest_positive=False)),
        Mistake("you took the farthest negative; batch-hard takes the hardest one, the CLOSEST "
                "negative (argmin).", variant=lambda d, y: numpy_hard(d, y, closest_negative=False)),
        Mistake("ties go to the lowest index (np.argmax / np.argmin do that; a loop that updates "
                "on >= or <= keeps the last one).", variant=lambda d, y: numpy_hard(d, y, last=True)),
        *_MINER_MISTAKES,
        Mistake("the right triplets in the wrong order: list them by anchor.",
                spots=_same_set_other_order),
    ),
)

SEMI_HARD = Exercise(
    name="semi_hard_miner",
    lesson="04",
    signature=("semi_hard_miner(d, labels) -> (anchors, positives, negatives): per positive pair "
               "(a, p), the closest negative with D(a, n) > D(a, p), else a's farthest negative"),
    reference=_library_miner("semi-hard"),
    cases=lambda: _miner_cases(505),
    kind=Triplets(),
    mistakes=(
        Mistake("non-strict inequality: a negative exactly as far as the positive, "
                "D(a, n) = D(a, p), is not farther; semi-hard needs D(a, n) > D(a, p).",
                variant=lambda d, y: numpy_semi_hard(d, y, strict=False)),
        Mistake("missing fallback: when no negative is farther than the positive, take the "
                "FARTHEST negative of a (the least violating one), not the closest.",
                variant=lambda d, y: numpy_semi_hard(d, y, fallback="closest")),
        Mistake("missing fallback: a pair (a, p) with no negative farther than p still gives a "
                "triplet, with a's farthest negative; it is not dropped.",
                variant=lambda d, y: numpy_semi_hard(d, y, fallback="skip")),
        Mistake("the semi-hard negative must be farther than the positive, D(a, n) > D(a, p): "
                "you took the closest negative overall (that is batch-hard's choice).",
                variant=lambda d, y: numpy_semi_hard(d, y, farther=False)),
        Mistake("the anchor was paired with itself as a positive (the diagonal of the label "
                "mask): exclude p == a.", variant=lambda d, y: numpy_semi_hard(d, y, self_positive=True)),
        Mistake("semi-hard mines one triplet per positive PAIR (a, p), not one per anchor.",
                spots=lambda got, args, expected: len(got[0]) == len(set(expected[0].tolist()))
                < len(expected[0])),
        Mistake("missing fallback: when no negative is farther than p, take a's farthest negative.",
                spots=_fallback_missed),
        *_MINER_MISTAKES,
        Mistake("the right triplets in the wrong order: list them by (a, p), anchor first.",
                spots=_same_set_other_order),
    ),
)

EXERCISES = (PK_COUNTS, BATCH_HARD, SEMI_HARD)
