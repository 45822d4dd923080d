"""Masks and miners: which (anchor, positive, negative) triplets a loss uses.

Notation (docs/definitions.md): a batch of B embeddings with labels y,
distance matrix D [B, B]; (a, p) is a *positive pair* when y_a = y_p and
a != p; (a, n) is a *negative pair* when y_a != y_n.

Strategies:

``"all"``        every valid (a, p, n): B x (K-1) x (B-K) of them in a P x K batch.
``"hard"``       per anchor, its farthest positive and its closest negative
                 (Hermans, Beyer, Leibe 2017, "batch hard").
``"semi-hard"``  per positive pair (a, p), the closest negative that is still
                 farther than the positive, D(a, n) > D(a, p); when no negative
                 is farther, the farthest negative (Schroff et al. 2015 as TF
                 Addons defines it). FaceNet's "farther than the positive but
                 within the margin" is exactly this negative whenever one lies in
                 the band D(a, p) < D(a, n) < D(a, p) + m.
``"random"``     no mining: per anchor, one positive and one negative drawn
                 uniformly at random among its valid ones (the baseline that
                 mining is measured against; FaceNet's "random triplets").

A miner hands out index triplets, like pytorch-metric-learning's: the losses
in :mod:`course_lib.losses` and the lessons' plots consume the same ones.
:func:`over_mined_triplets` gives them B at a time, ``Triplets(anchor,
positive, negative)`` of shape [B] with a validity mask [B]: fixed shapes, so
the losses also compile with XLA (Keras' default on GPU).
:func:`mine_triplets` returns them all at once, for plots and tests.

Cost: hard mining is one [B, B] pass. Semi-hard mining visits the positives
in *rounds* (:func:`over_positive_rounds`; round r: each anchor takes its
r-th positive) and does one [B, B] pass per round: O(B^2 K) time, O(B^2)
memory for a P x K batch, with no sort of D and no [B, B, B] tensor (TF
Addons tiles D B times: 22 GiB at B = 1024). Random sampling is one
[B, B] pass too (:func:`random_pick`): stateless, seeded by the batch itself
(:func:`batch_seed`), so the same batch always gives the same triplets
(within one execution mode: XLA's Philox kernel draws other numbers from
the same seed than TensorFlow's).
"""

from __future__ import annotations

from collections import namedtuple

import tensorflow as tf

from course_lib._checks import as_embeddings, as_labels
from course_lib.distances import pairwise_distances
from course_lib.options import STRATEGIES, check_choice

__all__ = ["STRATEGIES", "Triplets", "positive_mask", "negative_mask", "mine_triplets",
           "mine_triplets_from_distances", "over_mined_triplets", "over_positive_rounds", "random_pick", "batch_seed"]

#: ``mine_triplets(..., strategy="all")`` returns every (anchor, positive,
#: negative) triplet as index tensors. Above this many values it refuses with
#: a clear error instead of exhausting memory (2**27 values = 512 MiB per
#: temporary). The losses do not need it: they use O(B^2) memory.
MAX_TRIPLET_ELEMENTS = 2**27

Triplets = namedtuple("Triplets", ["anchor", "positive", "negative"])
Triplets.__doc__ = "Index triplets (anchor, positive, negative), each a 1-D int32 tensor."


# --------------------------------------------------------------------- masks
def positive_mask(labels):
    """[B, B] bool: ``y_i == y_j`` and ``i != j``."""
    y = tf.reshape(labels, [-1])
    same = tf.equal(y[:, None], y[None, :])
    return tf.logical_and(same, tf.logical_not(tf.eye(tf.shape(y)[0], dtype=tf.bool)))


def negative_mask(labels):
    """[B, B] bool: ``y_i != y_j``."""
    y = tf.reshape(labels, [-1])
    return tf.not_equal(y[:, None], y[None, :])


# ------------------------------------------------------- the miners, B at a time
def over_mined_triplets(labels, distances, strategy, per_batch, initial):
    """Fold ``state = per_batch(triplets, valid, state)`` over the mined triplets.

    ``triplets`` is a :class:`Triplets` of [B] index tensors whose anchor is
    ``0 .. B-1``; ``valid`` [B] says which of them exist (an anchor without a
    positive or without a negative has none). ``"hard"`` and ``"random"``
    call ``per_batch`` once; ``"semi-hard"`` once per round of positives, so
    every positive pair (a, p) comes exactly once. The mining reads ``distances`` without
    gradient; ``labels`` are [B] and ``distances`` [B, B], already checked.
    """
    d = tf.stop_gradient(distances)
    pos, neg = positive_mask(labels), negative_mask(labels)
    has_negative = tf.reduce_any(neg, axis=1)
    anchors = tf.range(tf.shape(d)[0])
    valid = tf.reduce_any(pos, axis=1) & has_negative
    if strategy == "random":
        seed = batch_seed(d)
        return per_batch(Triplets(anchors, random_pick(pos, seed), random_pick(neg, seed + 1)), valid, initial)
    if strategy == "hard":
        farthest_positive = tf.argmax(tf.where(pos, d, -1.0), axis=1, output_type=tf.int32)
        closest_negative = tf.argmin(tf.where(neg, d, float("inf")), axis=1, output_type=tf.int32)
        return per_batch(Triplets(anchors, farthest_positive, closest_negative), valid, initial)
    semi_hard_negative = _semi_hard_search(d, neg)

    def per_round(p, in_round, state):
        return per_batch(Triplets(anchors, p, semi_hard_negative(p)), in_round & has_negative, state)

    return over_positive_rounds(labels, per_round, initial)


def random_pick(mask, seed):
    """Per row a, one column drawn uniformly among those where ``mask[a]`` is True: [B] int32.

    Every entry gets an independent u[a, j] ~ U(0, 1) (stateless Philox,
    ``seed`` a [2] int tensor); the row's argmax of u over its allowed
    entries is each of them with probability 1 / (their number), since the
    largest of k i.i.d. draws is equally likely to be any of the k. A row
    with no allowed entry gets some index (mask it out). One [B, B] pass.
    """
    u = tf.random.stateless_uniform(tf.shape(mask), seed, alg="philox")
    return tf.argmax(tf.where(mask, u, -1.0), axis=1, output_type=tf.int32)


def batch_seed(distances):
    """A [2] int32 seed that is a function of the batch: its distances' bit patterns, hashed.

    Stateless: the same distances give the same seed (the same triplets), the
    next training step's batch (other images, other weights) another. Two
    sums of the float32 bits, one weighted by position (int32 wraps around).
    """
    bits = tf.reshape(tf.bitcast(tf.cast(distances, tf.float32), tf.int32), [-1])
    weights = 2 * tf.range(tf.size(bits), dtype=tf.int32) + 1
    return tf.stack([tf.reduce_sum(bits), tf.reduce_sum(bits * weights)])


def _semi_hard_search(d, neg):
    """A function ``p -> n``: the semi-hard negative of each pair (a, p[a]), both [B].

    n = argmin { D(a, n) : n negative of a, D(a, n) > D(a, p) }, or the
    farthest negative of a when no negative is farther than p.

    Each call is one pass over [B, B] with no mask: with t = D(a, p),
    closeness(n) = 1 / (t - D(a, n)) is negative exactly when D(a, n) > t,
    and the more negative the closer D(a, n) is to t from above; so its
    argmin is the semi-hard negative, and a minimum >= 0 means there is none.
    Entries that are not negatives hold D = -1, so 1 / (t + 1) > 0 never wins;
    a negative at exactly D = t gives 1 / 0 = +inf, never chosen: the
    inequality stays strict. Ties go to the lowest index.
    """
    negatives = tf.where(neg, d, -1.0)
    farthest = tf.argmax(negatives, axis=1, output_type=tf.int32)

    def search(p):
        closeness = 1.0 / (tf.gather(d, p, batch_dims=1)[:, None] - negatives)
        n = tf.argmin(closeness, axis=1, output_type=tf.int32)
        return tf.where(tf.gather(closeness, n, batch_dims=1) < 0.0, n, farthest)

    return search


def over_positive_rounds(labels, per_round, initial):
    """Fold ``state = per_round(p, in_round, state)`` over the rounds of positives.

    In round r every anchor a takes its r-th positive p[a] (in batch order),
    so a P x K batch has K - 1 rounds; ``in_round`` [B] says which anchors
    still have an r-th positive (the others get some index, to be masked
    out). ``initial`` is a tensor or a tuple of tensors.

    The positives come from sorting the B labels once, not from a [B, B]
    pass: a stable sort puts each class in one block, in batch order;
    anchor a's r-th positive is its block's entry r, or entry r + 1 once r
    reaches a's own place in the block.
    """
    y = tf.reshape(labels, [-1])
    order = tf.argsort(y, stable=True)  # each class one block, in batch order
    sorted_y = tf.gather(y, order)[None, :]
    block_start = tf.searchsorted(sorted_y, sorted_y, side="left")[0]
    block_end = tf.searchsorted(sorted_y, sorted_y, side="right")[0]
    place = tf.math.invert_permutation(order)  # where each anchor sits in `order`
    start, own = tf.gather(block_start, place), place - tf.gather(block_start, place)
    positives = tf.gather(block_end, place) - start - 1
    last = tf.size(y) - 1

    def body(r, state):
        entry = start + r + tf.cast(r >= own, tf.int32)  # skip the anchor itself
        p = tf.gather(order, tf.minimum(entry, last))
        return r + 1, per_round(p, positives > r, state)

    _, state = tf.while_loop(  # one round at a time: O(B^2) memory, not one [B, B] pass per round
        lambda r, _: r < tf.reduce_max(positives), body, (tf.constant(0), initial),
        maximum_iterations=tf.size(y), parallel_iterations=1,
    )
    return state


# ------------------------------------------------------- every triplet at once
def mine_triplets(labels, embeddings, strategy="semi-hard", metric="euclidean"):
    """Mine (anchor, positive, negative) index triplets from a batch.

    Returns :class:`Triplets`; see the module docstring for the strategies.
    Order: "all" by (a, p, n), "hard" and "random" by anchor, "semi-hard" by (a, p).
    """
    x = as_embeddings(embeddings)
    return mine_triplets_from_distances(as_labels(labels, x), pairwise_distances(x, metric), strategy)


def mine_triplets_from_distances(labels, distances, strategy="semi-hard"):
    """Like :func:`mine_triplets`, from a precomputed [B, B] distance matrix."""
    check_choice("strategy", strategy, STRATEGIES)
    d = tf.stop_gradient(as_embeddings(distances, name="distances"))
    y = as_labels(labels, d)
    if strategy == "all":
        pos = positive_mask(y)
        check_triplet_budget(enumerated_values(pos), "mining='all'")
        pairs = tf.where(pos)
        pair_and_negative = tf.where(tf.gather(negative_mask(y), pairs[:, 0]))  # (pair, n)
        a, p = tf.unstack(tf.gather(pairs, pair_and_negative[:, 0]), axis=1)
        return _triplets(a, p, pair_and_negative[:, 1])

    def record(t, valid, table):  # table[a, p] = n + 1 for each mined triplet
        return tf.tensor_scatter_nd_add(table, tf.stack([t.anchor, t.positive], 1),
                                        tf.where(valid, t.negative + 1, 0))

    table = over_mined_triplets(y, d, strategy, record, tf.zeros(tf.shape(d), tf.int32))
    pairs = tf.where(table > 0)  # in (a, p) order
    return _triplets(pairs[:, 0], pairs[:, 1], tf.gather_nd(table, pairs) - 1)


def _triplets(a, p, n):
    return Triplets(*(tf.cast(t, tf.int32) for t in (a, p, n)))


def enumerated_values(pos):
    """A bound on the values the "all" miner holds at once: B^2 (K - 1) in a P x K batch."""
    rounds = tf.reduce_max(tf.reduce_sum(tf.cast(pos, tf.int64), axis=1))
    batch = tf.shape(pos, out_type=tf.int64)[0]
    return rounds * batch * batch


def check_triplet_budget(count, what):
    """Refuse (ValueError eagerly, InvalidArgumentError in a graph) above MAX_TRIPLET_ELEMENTS.

    Under XLA (``jit_compile=True``) TensorFlow drops runtime assertions, so
    there the check cannot fire.
    """
    limit = MAX_TRIPLET_ELEMENTS
    message = (
        f"{what} would enumerate more than MAX_TRIPLET_ELEMENTS={limit} triplet "
        "values for this batch; use a smaller batch or another strategy, or raise "
        "course_lib.mining.MAX_TRIPLET_ELEMENTS."
    )
    if tf.executing_eagerly():
        if int(count) > limit:
            raise ValueError(message + f" (this batch: {int(count)})")
        return tf.no_op()
    return tf.debugging.assert_less_equal(count, tf.cast(limit, count.dtype), message=message)
