"""Exercises of lessons 05-06: a collapse detector and the retrieval metrics of one query."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from course_lib.exercises._grading import Case, Exercise, Mistake
from course_lib.exercises._kinds import EpochOrNone, Record

_SERIES = ("loss", "spread", "mean_positive_distance", "mean_negative_distance")


# ------------------------------------------------------------ collapse detector
def collapse_detector(history):
    """The first epoch that course_lib.training.detect_collapse flags, or None."""
    from course_lib.training import detect_collapse  # TensorFlow: on first use
    for epoch, values in enumerate(zip(*(history[k] for k in _SERIES))):
        record = SimpleNamespace(**dict(zip(_SERIES, values)))
        if detect_collapse(record, history["initial_spread"], history["stuck_at"]):
            return epoch
    return None


def _first_epoch(history, rule, last=False, offset=0):
    """The first (or last) epoch where ``rule(loss, spread, pos, neg, initial, stuck)`` holds."""
    flagged = [e for e, values in enumerate(zip(*(history[k] for k in _SERIES)))
               if rule(*values, history["initial_spread"], history["stuck_at"])]
    if not flagged:
        return None
    return (flagged[-1] if last else flagged[0]) + offset


def _shrunk(loss, spread, pos, neg, initial, stuck, strict=True):
    return spread < 0.05 * initial if strict else spread <= 0.05 * initial


def _stuck(loss, spread, pos, neg, initial, stuck, strict=True, both=True, absolute=True):
    gap = neg - pos if not absolute else abs(neg - pos)
    if strict:
        near, flat = abs(loss - stuck) < 0.02 * stuck, gap < 0.05 * stuck
    else:
        near, flat = abs(loss - stuck) <= 0.02 * stuck, gap <= 0.05 * stuck
    return (near and flat) if both else (near or flat)


def _rule(**options):
    shrunk_options = {k: v for k, v in options.items() if k == "strict"}
    return lambda *v: _shrunk(*v, **shrunk_options) or _stuck(*v, **options)


def _history(rng, epochs, stuck_at, collapse_at=None, stuck_from=None):
    spread0 = float(rng.choice([1.0, 2.0, 4.0]))
    loss, spread, pos, neg = [], [], [], []
    for e in range(epochs):
        if collapse_at is not None and e >= collapse_at:
            s = spread0 * float(rng.choice([0.001, 0.01, 0.03, 0.049]))
            l, p, n = stuck_at * float(rng.uniform(0.9, 1.1)), s * 0.5, s * 0.6
        elif stuck_from is not None and e >= stuck_from:
            s, l = spread0 * float(rng.uniform(0.3, 0.8)), stuck_at * float(rng.uniform(0.99, 1.01))
            p = float(rng.uniform(0.2, 0.5))
            n = p + stuck_at * float(rng.uniform(-0.04, 0.04))
        else:
            s, l = spread0 * float(rng.uniform(0.5, 2.0)), stuck_at * float(rng.uniform(0.2, 0.9))
            p = float(rng.uniform(0.2, 0.6))
            n = p + float(rng.uniform(0.1, 1.0))
        loss.append(l), spread.append(s), pos.append(p), neg.append(n)
    series = [np.round(v, 4).tolist() for v in (loss, spread, pos, neg)]
    return {**dict(zip(_SERIES, series)), "initial_spread": spread0, "stuck_at": stuck_at}


def _fixed(loss, spread, pos, neg, initial=2.0, stuck=0.5):
    return {"loss": loss, "spread": spread, "mean_positive_distance": pos,
            "mean_negative_distance": neg, "initial_spread": initial, "stuck_at": stuck}


def _collapse_cases():
    rng = np.random.default_rng(606)
    ln2 = math.log(2.0)
    cases = [
        Case({"history": _fixed([0.45, 0.3, 0.2, 0.49], [1.8, 2.5, 1.2, 0.05],
                                [0.5, 0.4, 0.3, 0.02], [1.2, 1.5, 1.6, 0.03])}, "collapse at the end"),
        Case({"history": _fixed([0.4, 0.3, 0.2], [2.5, 2.8, 3.0], [0.5, 0.4, 0.3], [1.2, 1.5, 1.6])},
             "a healthy run"),
        Case({"history": _fixed([0.5, 0.5], [0.01, 0.01], [0.0, 0.0], [0.0, 0.0])},
             "collapsed from epoch 0"),
        Case({"history": _fixed([0.3, 0.2, 0.1], [1.0, 0.1, 0.09], [0.5, 0.4, 0.3], [1.2, 1.5, 1.6])},
             "spread exactly 5% (not under it), then under"),
        Case({"history": _fixed([0.3, 0.5, 0.5], [1.0, 1.0, 1.0], [0.5, 0.4, 0.3], [1.2, 0.9, 0.31])},
             "loss stuck at the margin with a wide gap, then a narrow one"),
        Case({"history": _fixed([0.3, 0.2, 0.1], [1.0, 1.0, 1.0], [0.5, 0.4, 0.4], [0.5, 0.41, 0.4])},
             "no gap but the loss is falling"),
        Case({"history": _fixed([0.9, 0.8, 0.7], [1.0, 1.0, 1.0], [0.5, 0.6, 0.7], [0.4, 0.45, 0.5])},
             "negatives closer than positives, loss not stuck"),
        Case({"history": _fixed([0.3, 0.5, 0.5], [1.0, 1.0, 1.0], [0.5, 0.9, 0.4], [1.2, 0.3, 0.41])},
             "loss stuck with negatives much closer than positives, then no gap"),
        Case({"history": _fixed([0.6, ln2, 0.69], [1.0, 1.0, 0.8], [0.5, 0.4, 0.4], [0.8, 0.41, 0.42],
                                stuck=ln2)}, "soft margin: stuck at ln 2"),
        Case({"history": _fixed([0.3, 0.2], [0.4, 0.3], [0.5, 0.4], [1.2, 1.5], initial=8.0)},
             "spread above 5% of a large initial spread"),
    ]
    for _ in range(24):
        epochs, stuck_at = int(rng.integers(1, 7)), float(rng.choice([0.2, 0.5, 1.0, ln2]))
        when = int(rng.integers(0, epochs + 2))
        choice = rng.integers(0, 3)
        options = [{}, {"collapse_at": when}, {"stuck_from": when}][choice]
        cases.append(Case({"history": _history(rng, epochs, stuck_at, **options)}))
    return cases


COLLAPSE = Exercise(
    name="collapse_detector",
    lesson="05",
    signature=("collapse_detector(history) -> int or None: the first 0-based epoch with spread < 5% "
               "of initial_spread, or |loss - stuck_at| < 2% of stuck_at and |gap| < 5% of stuck_at"),
    reference=collapse_detector,
    cases=_collapse_cases,
    kind=EpochOrNone(),
    mistakes=(
        Mistake("off by one: epochs are counted from 0 (the index in the lists).",
                variant=lambda h: _first_epoch(h, _rule(), offset=1)),
        Mistake("you returned the LAST collapsed epoch; the detector reports the first one.",
                variant=lambda h: _first_epoch(h, _rule(), last=True)),
        Mistake("the thresholds are strict: exactly 5% (or 2%) is not under it; use <, not <=.",
                variant=lambda h: _first_epoch(h, _rule(strict=False))),
        Mistake("a stuck loss alone is not collapse: it also needs negatives no farther than "
                "positives (|gap| < 5% of stuck_at); the two stuck conditions go with `and`.",
                variant=lambda h: _first_epoch(h, _rule(both=False))),
        Mistake("the gap is compared in absolute value, |mean_neg - mean_pos|: negatives much "
                "CLOSER than positives are not a collapse sign.",
                variant=lambda h: _first_epoch(h, _rule(absolute=False))),
        Mistake("the two symptoms are alternatives (`or`): a spread under 5% is collapse on its own.",
                variant=lambda h: _first_epoch(h, _stuck)),
        Mistake("a stuck loss with no gap is collapse too, even when the spread has not shrunk.",
                variant=lambda h: _first_epoch(h, _shrunk)),
    ),
)


# ------------------------------------------------------------ retrieval metrics
def retrieval_metrics(query_label, ranked_labels, r_offset=0, map_cut=True, map_by_hits=False):
    """P@1 and MAP@R (Musgrave et al. 2020) of one query; keywords: variants of mistakes."""
    match = np.asarray(ranked_labels) == query_label
    r = int(match.sum()) + r_offset
    if r == 0 or not match.size:
        return {"precision_at_1": float(match[:1].sum()), "map_at_r": 0.0}
    rank = np.arange(1, match.size + 1)
    precision_at = np.cumsum(match) / rank  # P(i) = hits in the first i / i
    kept = match[:r] if map_cut else match
    total = float(np.sum(precision_at[:kept.size] * kept))
    divisor = max(int(match[:r].sum()), 1) if map_by_hits else r
    return {"precision_at_1": float(match[0]), "map_at_r": total / divisor}


def _r_precision(query_label, ranked_labels):
    match = np.asarray(ranked_labels) == query_label
    r = int(match.sum())
    return {"precision_at_1": float(match[0]), "map_at_r": float(match[:r].mean()) if r else 0.0}


def _second_as_first(query_label, ranked_labels):
    match = np.asarray(ranked_labels) == query_label
    metrics = retrieval_metrics(query_label, ranked_labels)
    return {**metrics, "precision_at_1": float(match[1]) if match.size > 1 else 0.0}


def _retrieval_cases():
    rng = np.random.default_rng(707)
    cases = [
        Case({"query_label": 1, "ranked_labels": np.array([1, 0, 1, 1, 0])}),
        Case({"query_label": 2, "ranked_labels": np.array([0, 2, 2, 1, 2, 0])}, "a miss first"),
        Case({"query_label": 3, "ranked_labels": np.array([0, 1, 1, 2])}, "R = 0: no same-class item"),
        Case({"query_label": 4, "ranked_labels": np.array([4, 4, 4])}, "every item matches"),
        Case({"query_label": 7, "ranked_labels": np.array([7])}, "one item"),
        Case({"query_label": 9, "ranked_labels": np.array([2, 9, 5, 5, 9, 2, 9])}, "labels with gaps"),
        Case({"query_label": 0, "ranked_labels": np.array([1, 1, 1, 1, 0])}, "the match comes last"),
    ]
    for _ in range(30):
        n = int(rng.integers(2, 12))
        cases.append(Case({"query_label": int(rng.integers(0, 3)),
                           "ranked_labels": rng.integers(0, 4, n)}))
    return cases


RETRIEVAL = Exercise(
    name="retrieval_metrics",
    lesson="06",
    signature=("retrieval_metrics(query_label, ranked_labels) -> {'precision_at_1': float, "
               "'map_at_r': float}, R = the number of ranked items with the query's label"),
    reference=retrieval_metrics,
    cases=_retrieval_cases,
    kind=Record(("precision_at_1", "map_at_r")),
    mistakes=(
        Mistake("R = 0 (no item with the query's label): map_at_r is 0.0, not a division by zero.",
                spots=lambda got, args, expected: not np.isfinite(got["map_at_r"])
                and not np.any(np.asarray(args["ranked_labels"]) == args["query_label"])),
        Mistake("that is R-precision (the share of hits among the first R); MAP@R averages "
                "P(i) over the ranks i <= R that are hits, so early hits count more.",
                variant=_r_precision),
        Mistake("MAP@R stops at rank R: hits after the first R items do not count.",
                variant=lambda q, labels: retrieval_metrics(q, labels, map_cut=False)),
        Mistake("divide the sum of P(i) by R, not by the number of hits among the first R.",
                variant=lambda q, labels: retrieval_metrics(q, labels, map_by_hits=True)),
        Mistake("the query is not in ranked_labels: its first neighbour is ranked_labels[0], and "
                "precision@1 is whether that one matches.", variant=_second_as_first),
        Mistake("R counts the ranked items with the query's label; the query itself is not one "
                "of them, do not add 1.",
                variant=lambda q, labels: retrieval_metrics(q, labels, r_offset=1)),
    ),
)

EXERCISES = (COLLAPSE, RETRIEVAL)
