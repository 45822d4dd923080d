"""course_lib.mining: masks and triplet miners against the loop reference."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import reference as ref
from conftest import all_batches, make_pk_batch, make_random_batch

from course_lib import mining
from course_lib.distances import pairwise_distances
from course_lib.mining import (
    Triplets,
    mine_triplets,
    mine_triplets_from_distances,
    negative_mask,
    positive_mask,
)

STRATEGIES = ref.STRATEGIES


def as_list(triplets):
    """Triplets of tensors -> list of (a, p, n) python ints, checking types."""
    assert isinstance(triplets, Triplets)
    assert triplets._fields == ("anchor", "positive", "negative")
    for t in triplets:
        assert isinstance(t, tf.Tensor)
        assert t.dtype == tf.int32
        assert t.shape.rank == 1
    a, p, n = (t.numpy().tolist() for t in triplets)
    assert len(a) == len(p) == len(n)
    return list(zip(a, p, n))


def test_strategies_constant():
    assert tuple(mining.STRATEGIES) == ("all", "hard", "semi-hard", "random")


# ---------------------------------------------------------------------------
# masks
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("labels, x", all_batches())
def test_masks_match_reference(labels, x):
    pos, neg = positive_mask(labels), negative_mask(labels)
    assert pos.dtype == tf.bool and neg.dtype == tf.bool
    np.testing.assert_array_equal(pos.numpy(), ref.positive_mask(labels))
    np.testing.assert_array_equal(neg.numpy(), ref.negative_mask(labels))


def test_masks_by_hand():
    labels = np.array([5, 2, 5, 5])
    pos = np.array([
        [0, 0, 1, 1],
        [0, 0, 0, 0],
        [1, 0, 0, 1],
        [1, 0, 1, 0],
    ], bool)
    neg = np.array([
        [0, 1, 0, 0],
        [1, 0, 1, 1],
        [0, 1, 0, 0],
        [0, 1, 0, 0],
    ], bool)
    np.testing.assert_array_equal(positive_mask(labels).numpy(), pos)
    np.testing.assert_array_equal(negative_mask(labels).numpy(), neg)


@pytest.mark.parametrize("variant", ["column", "float", "float_column", "tensor"])
def test_masks_accept_keras_and_float_labels(variant):
    labels = np.array([3, 1, 3, 0, 1, 3], np.int32)
    v = {
        "column": labels[:, None],
        "float": labels.astype(np.float32),
        "float_column": labels.astype(np.float32)[:, None],
        "tensor": tf.constant(labels[:, None], tf.int64),
    }[variant]
    np.testing.assert_array_equal(positive_mask(v).numpy(), ref.positive_mask(labels))
    np.testing.assert_array_equal(negative_mask(v).numpy(), ref.negative_mask(labels))


# ---------------------------------------------------------------------------
# miners against the reference (tie-free random data)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ref.METRICS)
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("labels, x", all_batches())
def test_mine_triplets_matches_reference(labels, x, strategy, metric):
    got = as_list(mine_triplets(labels, x, strategy=strategy, metric=metric))
    assert got == ref.mine_triplets(labels, x, strategy, metric)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("seed", range(4))
def test_mine_from_distances_matches_reference(strategy, seed):
    # An arbitrary symmetric matrix with zero diagonal: semi-hard's fallback
    # (no negative farther than the positive) happens often here.
    rng = np.random.default_rng(100 + seed)
    b = 14
    labels = rng.integers(0, 4, size=b)
    d = rng.uniform(0.0, 3.0, size=(b, b)).astype(np.float32)
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0.0)
    got = as_list(mine_triplets_from_distances(labels, d, strategy=strategy))
    assert got == ref.mine_triplets_from_distances(labels, d.astype(np.float64), strategy)


@pytest.mark.parametrize("metric", ref.METRICS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_mine_triplets_equals_mining_its_distances(strategy, metric):
    labels, x = make_random_batch(16, 4, 5, seed=21)
    a = as_list(mine_triplets(labels, x, strategy=strategy, metric=metric))
    d = pairwise_distances(x, metric=metric)
    b = as_list(mine_triplets_from_distances(labels, d, strategy=strategy))
    assert a == b


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_triplet_counts_in_pk_batch(strategy):
    # P x K batch: B = P K anchors, each with K - 1 positives and (P - 1) K negatives.
    p, k = 4, 3
    labels, x = make_pk_batch(p, k, 6, seed=22)
    got = as_list(mine_triplets(labels, x, strategy=strategy))
    expected = {
        "all": p * k * (k - 1) * (p - 1) * k,
        "hard": p * k,
        "semi-hard": p * k * (k - 1),
    }[strategy]
    assert len(got) == expected
    for a, pp, n in got:
        assert labels[a] == labels[pp] and a != pp and labels[a] != labels[n]


# ---------------------------------------------------------------------------
# hand-placed points
# ---------------------------------------------------------------------------
# On a line: A = x0 = 0 and P = x1 = 1 share class 0; every other point is
# the only member of its class, so it is never an anchor.
#   x2 = 0.5 (class 1), x3 = 1.6 (class 2), x4 = 3 (class 3)
# From A: D(A,P) = 1; negatives at 0.5 (x2), 1.6 (x3), 3 (x4).
# From P: D(P,A) = 1; negatives at 0.5 (x2), 0.6 (x3), 2 (x4).
HAND_X = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0], [1.6, 0.0], [3.0, 0.0]], np.float32)
HAND_Y = np.array([0, 0, 1, 2, 3])

# A and P = (2, 0) in class 0, negatives x2 = (1, 0) and x3 = (1, 0.5):
# every negative is closer to A (1 and sqrt(1.25) = 1.118) and to P (the
# same, by symmetry) than D(A,P) = 2, so semi-hard falls back to the
# farthest negative, x3, for both anchors.
FALLBACK_X = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0], [1.0, 0.5]], np.float32)
FALLBACK_Y = np.array([0, 0, 1, 2])


def test_hand_semi_hard():
    # A: the closest negative farther than 1 is x3 (1.6), not x2 (0.5, too
    #    close: a hard negative) nor x4 (3, farther).
    # P: x2 at 0.5 and x3 at 0.6 are both closer than A, x4 at 2 is farther.
    got = as_list(mine_triplets(HAND_Y, HAND_X, strategy="semi-hard"))
    assert got == [(0, 1, 3), (1, 0, 4)]


def test_hand_semi_hard_fallback_is_farthest_negative():
    got = as_list(mine_triplets(FALLBACK_Y, FALLBACK_X, strategy="semi-hard"))
    assert got == [(0, 1, 3), (1, 0, 3)]
    # hard mining takes the closest negative instead: x2 at distance 1
    got = as_list(mine_triplets(FALLBACK_Y, FALLBACK_X, strategy="hard"))
    assert got == [(0, 1, 2), (1, 0, 2)]


def test_hand_hard():
    # closest negative: x2 from both A (0.5) and P (0.5 < 0.6 of x3)
    got = as_list(mine_triplets(HAND_Y, HAND_X, strategy="hard"))
    assert got == [(0, 1, 2), (1, 0, 2)]


def test_hand_hard_farthest_positive():
    # class 0: x0 = 0, x1 = 1, x2 = 4; class 1: x3 = 2
    # anchor 0: positives at 1 and 4 -> x2; anchor 1: at 1 and 3 -> x2;
    # anchor 2: at 4 and 3 -> x0.  Anchor 3 has no positive.
    x = np.array([[0.0], [1.0], [4.0], [2.0]], np.float32)
    y = np.array([0, 0, 0, 1])
    got = as_list(mine_triplets(y, x, strategy="hard"))
    assert got == [(0, 2, 3), (1, 2, 3), (2, 0, 3)]


def test_hand_all_is_lexicographic():
    got = as_list(mine_triplets(HAND_Y, HAND_X, strategy="all"))
    assert got == [(0, 1, 2), (0, 1, 3), (0, 1, 4), (1, 0, 2), (1, 0, 3), (1, 0, 4)]


def test_semi_hard_uses_strict_inequality():
    # Distances given directly: for anchor 0, D(0,1) = 1 and negative 2 is at
    # exactly 1 (not farther), negative 3 at 1.5 -> negative 3.  For anchor 1,
    # D(1,0) = 1, negatives at 2 and 3 -> the closer one, 2.
    d = np.array([
        [0.0, 1.0, 1.0, 1.5],
        [1.0, 0.0, 2.0, 3.0],
        [1.0, 2.0, 0.0, 1.0],
        [1.5, 3.0, 1.0, 0.0],
    ], np.float32)
    y = np.array([0, 0, 1, 2])
    got = as_list(mine_triplets_from_distances(y, d, strategy="semi-hard"))
    assert got == [(0, 1, 3), (1, 0, 2)]


# ---------------------------------------------------------------------------
# degenerate batches and label formats
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("labels", [
    pytest.param([0, 1, 2, 3], id="no_positive_pair"),
    pytest.param([4, 4, 4, 4], id="single_class"),
    pytest.param([7], id="one_sample"),
    pytest.param([1, 2], id="two_classes_one_each"),
])
def test_degenerate_batches_give_no_triplets(strategy, labels):
    x = np.random.default_rng(0).normal(size=(len(labels), 3)).astype(np.float32)
    assert as_list(mine_triplets(np.array(labels), x, strategy=strategy)) == []


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_anchor_without_negative_or_positive_is_skipped(strategy):
    # class 9 is a singleton: never an anchor (no positive), only a negative
    labels, x = np.array([0, 0, 9, 0]), np.array([[0.0], [1.0], [5.0], [2.5]], np.float32)
    got = as_list(mine_triplets(labels, x, strategy=strategy))
    assert got == ref.mine_triplets(labels, x, strategy)
    assert all(a != 2 for a, _, _ in got)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("variant", ["column", "float", "float_column", "int64_tensor"])
def test_label_formats_give_same_triplets(strategy, variant):
    labels, x = make_random_batch(12, 3, 4, seed=23)
    v = {
        "column": labels[:, None],
        "float": labels.astype(np.float32),
        "float_column": labels.astype(np.float64)[:, None],
        "int64_tensor": tf.constant(labels, tf.int64),
    }[variant]
    assert as_list(mine_triplets(v, x, strategy=strategy)) == as_list(mine_triplets(labels, x, strategy=strategy))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_tf_function_with_unknown_batch_size_matches_eager(strategy):
    labels, x = make_random_batch(13, 3, 4, seed=24)
    fn = tf.function(
        lambda y, e: tuple(mine_triplets(y, e, strategy=strategy)),
        input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, None], tf.float32)],
    )
    graph = [t.numpy().tolist() for t in fn(labels, x)]
    eager = [t.numpy().tolist() for t in mine_triplets(labels, x, strategy=strategy)]
    assert graph == eager
    # the traced function also handles a batch of another size
    labels2, x2 = make_random_batch(7, 2, 4, seed=25)
    graph2 = list(zip(*[t.numpy().tolist() for t in fn(labels2, x2)]))
    assert graph2 == ref.mine_triplets(labels2, x2, strategy)


# ---------------------------------------------------------------------------
# the rounds of positives
# ---------------------------------------------------------------------------
def rounds_by_loop(labels):
    """Round r: each anchor's r-th positive in batch order, or None."""
    labels = np.asarray(labels).reshape(-1)
    positives = [[j for j in range(len(labels)) if j != i and labels[j] == labels[i]] for i in range(len(labels))]
    n_rounds = max((len(p) for p in positives), default=0)
    return [[p[r] if r < len(p) else None for p in positives] for r in range(n_rounds)]


def record_rounds(labels):
    """[B, B] int32: row r = each anchor's p in round r (-2 when out of it); -1 rows unused."""
    y = tf.reshape(labels, [-1])
    b = tf.size(y)

    def record(p, in_round, seen):
        r = tf.reduce_sum(tf.cast(seen[:, 0] >= 0, tf.int32))  # rows filled so far
        return tf.tensor_scatter_nd_update(seen, [[r]], tf.where(in_round, p, -2)[None, :])

    return mining.over_positive_rounds(labels, record, tf.fill([b, b], -1))


def as_rounds(seen):
    return [[None if v == -2 else int(v) for v in row] for row in np.asarray(seen) if row[0] != -1]


ROUND_LABELS = {
    "pk": np.array([7, 3, 7, 3, 7, 3]),
    "unbalanced": np.array([2, 5, 2, 2, 9, 5, 2]),
    "singletons": np.array([0, 1, 2, 3]),
    "one-class": np.array([4, 4, 4]),
    "negative-and-large-ids": np.array([-1, 2**40, -1, 2**40, 2**40 + 1], np.int64),
    "float-column": np.array([[0.5], [1.5], [0.5], [1.5], [0.25]], np.float32),
    "random": np.random.default_rng(7).integers(0, 5, size=23).astype(np.int32),
}


@pytest.mark.parametrize("name", list(ROUND_LABELS))
def test_rounds_visit_each_positive_pair_once_in_batch_order(name):
    labels = ROUND_LABELS[name]
    assert as_rounds(record_rounds(tf.constant(labels))) == rounds_by_loop(labels)


@pytest.mark.parametrize("jit", [False, True], ids=["unknown-batch-size", "xla"])
def test_rounds_in_tf_function(jit):
    labels = ROUND_LABELS["random"]
    signature = None if jit else [tf.TensorSpec([None], tf.int32)]
    traced = tf.function(record_rounds, jit_compile=jit, input_signature=signature)
    assert as_rounds(traced(tf.constant(labels))) == rounds_by_loop(labels)


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
def test_unknown_strategy_raises():
    labels, x = make_pk_batch(2, 2, 3)
    with pytest.raises(ValueError, match="strategy|mining"):
        mine_triplets(labels, x, strategy="semihard")
    with pytest.raises(ValueError, match="strategy|mining"):
        mine_triplets_from_distances(labels, pairwise_distances(x), strategy="easy")


def test_unknown_metric_raises():
    labels, x = make_pk_batch(2, 2, 3)
    with pytest.raises(ValueError, match="metric"):
        mine_triplets(labels, x, strategy="hard", metric="l1")


def test_labels_length_mismatch_raises():
    _, x = make_pk_batch(2, 2, 3)
    with pytest.raises(ValueError, match="labels|embeddings"):
        mine_triplets(np.array([0, 1, 0]), x, strategy="hard")


# ---------------------------------------------------------------------------
# MAX_TRIPLET_ELEMENTS: the "all" miner refuses instead of exhausting memory
# ---------------------------------------------------------------------------
# The limit is read when the miner runs, so patching the module works.
# P x K = 4 x 3: 4 * 3 * 2 = 24 ordered positive pairs, each anchor with 9
# negatives among B = 12 candidates: 216 valid triplets, and the bound
# enumerated_values = 2 rounds * 12 * 12 = 288.
P, K = 4, 3
N_TRIPLETS, BOUND = P * K * (K - 1) * (P - 1) * K, (K - 1) * (P * K) ** 2


def test_max_triplet_elements_is_an_int():
    assert isinstance(mining.MAX_TRIPLET_ELEMENTS, int) and mining.MAX_TRIPLET_ELEMENTS > 0


def test_enumerated_values_bounds_the_triplets():
    labels, _ = make_pk_batch(P, K, 4, seed=45)
    assert int(mining.enumerated_values(positive_mask(labels))) == BOUND >= N_TRIPLETS


def test_budget_exceeded_raises_eagerly(monkeypatch):
    labels, x = make_pk_batch(P, K, 4, seed=45)
    monkeypatch.setattr(mining, "MAX_TRIPLET_ELEMENTS", BOUND - 1)
    with pytest.raises(ValueError, match="MAX_TRIPLET_ELEMENTS"):
        mine_triplets(labels, x, strategy="all")


def test_budget_not_exceeded_mines(monkeypatch):
    labels, x = make_pk_batch(P, K, 4, seed=45)
    monkeypatch.setattr(mining, "MAX_TRIPLET_ELEMENTS", BOUND)
    got = as_list(mine_triplets(labels, x, strategy="all"))
    assert len(got) == N_TRIPLETS
    assert got == ref.mine_triplets(labels, x, "all", "euclidean")


def test_budget_exceeded_raises_in_tf_function(monkeypatch):
    labels, x = make_pk_batch(P, K, 4, seed=45)
    monkeypatch.setattr(mining, "MAX_TRIPLET_ELEMENTS", BOUND - 1)
    fn = tf.function(
        lambda y, e: mine_triplets(y, e, strategy="all"),
        input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, None], tf.float32)],
    )
    with pytest.raises(tf.errors.InvalidArgumentError):
        fn(labels, x)
    # a small batch still goes through the same trace
    y_small, x_small = make_pk_batch(2, 2, 4, seed=46)
    assert as_list(fn(y_small, x_small)) == ref.mine_triplets(y_small, x_small, "all", "euclidean")


@pytest.mark.parametrize("strategy", ["hard", "semi-hard"])
def test_budget_does_not_limit_quadratic_miners(strategy, monkeypatch):
    labels, x = make_pk_batch(P, K, 4, seed=45)
    monkeypatch.setattr(mining, "MAX_TRIPLET_ELEMENTS", 1)
    assert as_list(mine_triplets(labels, x, strategy=strategy)) == ref.mine_triplets(labels, x, strategy, "euclidean")


# ---------------------------------------------------------------------------
# "random": no mining, one uniform (p, n) per anchor, seeded by the batch
# ---------------------------------------------------------------------------
def assert_valid_random_draw(labels, got):
    """One triplet per anchor that has a positive and a negative, in anchor order, each valid."""
    candidates = ref.random_candidates(labels)
    assert [a for a, _, _ in got] == sorted(candidates)
    for a, p, n in got:
        positives, negatives = candidates[a]
        assert p in positives and n in negatives


@pytest.mark.parametrize("labels, x", all_batches())
def test_random_draws_one_valid_triplet_per_anchor(labels, x):
    assert_valid_random_draw(labels, as_list(mine_triplets(labels, x, strategy="random")))


def test_random_is_reproducible_and_changes_with_the_batch():
    labels, x = make_pk_batch(4, 4, 6, seed=50)
    first = as_list(mine_triplets(labels, x, strategy="random"))
    assert as_list(mine_triplets(labels, x, strategy="random")) == first
    assert as_list(mine_triplets(labels, x + 0.01, strategy="random")) != first  # another step, another draw


def test_random_covers_every_candidate_uniformly():
    # 600 batches with the same labels and random distances (another seed each time):
    # each anchor's positive and negative are uniform over its candidates.
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3], np.int32)
    candidates = ref.random_candidates(labels)
    rng = np.random.default_rng(51)
    draw = tf.function(lambda d: tuple(mine_triplets_from_distances(labels, d, strategy="random")))
    counts = {a: (dict.fromkeys(p, 0), dict.fromkeys(n, 0)) for a, (p, n) in candidates.items()}
    trials = 600
    for _ in range(trials):
        d = rng.uniform(0.0, 2.0, size=(len(labels), len(labels))).astype(np.float32)
        triplets = list(zip(*(t.numpy().tolist() for t in draw(d))))
        assert_valid_random_draw(labels, triplets)
        for a, p, n in triplets:
            counts[a][0][p] += 1
            counts[a][1][n] += 1
    for a, (positives, negatives) in counts.items():
        for seen in (positives, negatives):
            expected = trials / len(seen)
            # binomial std <= sqrt(trials / 4) ~ 12.2: 5 std either side, never hit by chance
            assert all(abs(c - expected) < 5 * np.sqrt(expected) for c in seen.values()), f"anchor {a}: {seen}"


def test_random_pick_is_uniform_over_the_mask():
    mask = tf.constant([[True, False, True, True], [False, False, False, True], [False] * 4])
    picks = np.array([mining.random_pick(mask, tf.constant([s, 7])).numpy() for s in range(300)])
    assert set(picks[:, 0]) == {0, 2, 3} and set(picks[:, 1]) == {3}
    np.testing.assert_allclose(np.bincount(picks[:, 0], minlength=4)[[0, 2, 3]] / 300, 1 / 3, atol=0.1)


@pytest.mark.parametrize("labels", [
    pytest.param([0, 1, 2, 3], id="no_positive_pair"),
    pytest.param([4, 4, 4, 4], id="single_class"),
    pytest.param([7], id="one_sample"),
])
def test_random_degenerate_batches_give_no_triplets(labels):
    x = np.random.default_rng(0).normal(size=(len(labels), 3)).astype(np.float32)
    assert as_list(mine_triplets(np.array(labels), x, strategy="random")) == []


def test_random_skips_anchor_without_positive_or_negative():
    labels, x = np.array([0, 0, 9, 0]), np.array([[0.0], [1.0], [5.0], [2.5]], np.float32)
    got = as_list(mine_triplets(labels, x, strategy="random"))
    assert [a for a, _, _ in got] == [0, 1, 3] and all(n == 2 for _, _, n in got)


@pytest.mark.parametrize("variant", ["column", "float_column", "int64_tensor"])
def test_random_label_formats_give_same_triplets(variant):
    labels, x = make_random_batch(12, 3, 4, seed=52)
    v = {"column": labels[:, None], "float_column": labels.astype(np.float64)[:, None],
         "int64_tensor": tf.constant(labels, tf.int64)}[variant]
    assert as_list(mine_triplets(v, x, strategy="random")) == as_list(mine_triplets(labels, x, strategy="random"))


@pytest.mark.parametrize("jit", [False, True], ids=["tf.function", "xla"])
def test_random_in_graph_and_xla(jit):
    labels, x = make_random_batch(13, 3, 4, seed=53)
    d = pairwise_distances(x)

    def draw(y, dist):  # what the losses see: B triplets and a validity mask, fixed shapes
        return mining.over_mined_triplets(y, dist, "random", lambda t, valid, _: (*t, valid), (0, 0, 0, False))

    compiled = tf.function(draw, jit_compile=jit)
    a, p, n, valid = (t.numpy() for t in compiled(tf.constant(labels), d))
    got = [(int(i), int(j), int(k)) for i, j, k, v in zip(a, p, n, valid) if v]
    assert_valid_random_draw(labels, got)
    assert [t.numpy().tolist() for t in compiled(tf.constant(labels), d)] == [a.tolist(), p.tolist(), n.tolist(),
                                                                              valid.tolist()]
    if not jit:  # XLA's Philox kernel draws other numbers from the same seed than TensorFlow's
        assert got == as_list(mine_triplets_from_distances(labels, d, strategy="random"))
