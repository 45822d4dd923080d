"""Masks and miners: which (anchor, positive, negative) triplets a loss uses.

Notation (COURSE_GUIDE section 1): a batch of B embeddings with labels y,
distance matrix D [B, B]; (a, p) is a *positive pair* when y_a = y_p and
a != p; (a, n) is a *negative pair* when y_a != y_n.

Strategies, for margin m:

``"all"``        every valid (a, p, n): B x (K-1) x (B-K) of them in a P x K batch.
``"hard"``       per anchor, its farthest positive and its closest negative
                 (Hermans, Beyer, Leibe 2017, "batch hard").
``"semi-hard"``  per positive pair (a, p), the closest negative that is still
                 farther than the positive, D(a, n) > D(a, p); when no negative
                 is farther, the farthest negative (Schroff et al. 2015 as TF
                 Addons defines it). FaceNet's "farther than the positive but
                 within the margin" is exactly this negative whenever one lies in
                 the band D(a, p) < D(a, n) < D(a, p) + m.

Miners return :class:`Triplets` of index tensors, like pytorch-metric-learning:
the losses in :mod:`course_lib.losses` and the lesson plots consume the same
triplets. Internally the losses use the dense forms below
(:func:`hardest_positives`, :func:`semi_hard_search`, ...) because their
shapes are fixed, which keeps them usable under XLA (Keras compiles with XLA
by default on GPU).

Cost: hard mining is O(B^2) time and memory. Semi-hard mining visits the
positives in *rounds* (:func:`over_positive_rounds`; round r: each anchor
takes its r-th positive, read off one sort of the B labels) and does one
[B, B] pass per round: O(B^2 K) time, O(B^2) memory for a P x K batch, with
no sort of D and no [B, B, B] tensor (TF Addons tiles D B times: 22 GiB at
B = 1024).
"""

from __future__ import annotations

from collections import namedtuple

import tensorflow as tf

from course_lib._checks import as_embeddings, as_labels, check_choice
from course_lib.distances import pairwise_distances

STRATEGIES = ("all", "hard", "semi-hard")

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
    y = _labels_1d(labels)
    same = tf.equal(y[:, None], y[None, :])
    return tf.logical_and(same, tf.logical_not(tf.eye(tf.shape(y)[0], dtype=tf.bool)))


def negative_mask(labels):
    """[B, B] bool: ``y_i != y_j``."""
    y = _labels_1d(labels)
    return tf.not_equal(y[:, None], y[None, :])


def _labels_1d(labels):
    y = tf.convert_to_tensor(labels)
    return tf.reshape(y, [-1])


# ------------------------------------------------- dense miners (fixed shape)
def hardest_positives(distances, pos):
    """[B] index of each anchor's farthest positive (meaningless without one)."""
    return tf.argmax(tf.where(pos, distances, -1.0), axis=1, output_type=tf.int32)


def closest_negatives(distances, neg):
    """[B] index of each anchor's closest negative (meaningless without one)."""
    return tf.argmin(tf.where(neg, distances, float("inf")), axis=1, output_type=tf.int32)


def semi_hard_search(distances, neg):
    """A function ``p -> n``: the semi-hard negative of each pair (a, p[a]), both [B].

    n = argmin { D(a, n) : n negative of a, D(a, n) > D(a, p) }, or the
    farthest negative of a when no negative is farther than p. Ties go to
    the lowest index.

    Each call is one pass over [B, B] with no mask: with t = D(a, p),

        closeness(n) = 1 / (t - D(a, n))

    is negative exactly when D(a, n) > t, and the closer D(a, n) is to t
    from above, the more negative it is; so its argmin is the semi-hard
    negative, and a minimum >= 0 means there is none. Entries that are not
    negatives hold D = -1, so 1 / (t + 1) > 0 never wins; a negative at
    exactly D = t gives 1 / 0 = +inf, never chosen: the inequality stays
    strict. (Two distances within a float rounding of each other may tie.)
    """
    distances = tf.stop_gradient(distances)
    negatives = tf.where(neg, distances, -1.0)  # -1: not a negative of the row
    fallback = tf.argmax(negatives, axis=1, output_type=tf.int32)  # the farthest negative

    def search(p):
        d_ap = tf.gather(distances, p, batch_dims=1)  # [B]
        closeness = 1.0 / (d_ap[:, None] - negatives)
        n = tf.argmin(closeness, axis=1, output_type=tf.int32)
        return tf.where(tf.gather(closeness, n, batch_dims=1) < 0.0, n, fallback)

    return search


def over_positive_rounds(labels, per_round, initial):
    """Fold ``state = per_round(p, in_round, state)`` over the rounds of positives.

    In round r every anchor a takes its r-th positive p[a] (in batch order),
    so a P x K batch has K - 1 rounds and each round is a handful of [B, B]
    passes; ``in_round`` [B] says which anchors still have an r-th positive
    (the others get some index, to be masked out). ``initial`` is the
    starting state (a tensor or a tuple of tensors). The semi-hard miner and
    the losses that visit every positive pair all run on this loop.

    The positives come from sorting the B labels once, O(B log B), not from
    a [B, B] pass: a stable sort puts each class in one block, in batch
    order; anchor a's positives are its block without a itself, so its r-th
    positive is the block's entry r, or entry r + 1 once r reaches a's own
    place in the block.
    """
    y = _labels_1d(labels)
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

    _, state = tf.while_loop(
        lambda r, _: r < tf.reduce_max(positives), body, (tf.constant(0), initial),
        maximum_iterations=tf.size(y),
    )
    return state


def semi_hard_negatives(labels, distances):
    """[B, B] int32: for each positive pair (a, p), the index of its semi-hard negative.

    Entries that are not positive pairs, or whose anchor has no negative,
    are meaningless. One [B, B] pass per positive round (see
    :func:`semi_hard_search`): O(B^2 K) time, O(B^2) memory for P x K batches.
    """
    search = semi_hard_search(distances, negative_mask(labels))
    anchors = tf.range(tf.shape(distances)[0])

    def one_round(p, in_round, by_pair):
        # Each pair (a, p) is visited once: adding to 0 sets it; anchors out of
        # the round add 0 wherever their clipped p points.
        n = search(p) * tf.cast(in_round, tf.int32)
        return tf.tensor_scatter_nd_add(by_pair, tf.stack([anchors, p], 1), n)

    return over_positive_rounds(labels, one_round, tf.zeros(tf.shape(distances), tf.int32))


# ------------------------------------------------------- index-triplet miners
def mine_triplets(labels, embeddings, strategy="semi-hard", metric="euclidean"):
    """Mine (anchor, positive, negative) index triplets from a batch.

    Returns :class:`Triplets`; see the module docstring for the strategies.
    Order: "all" by (a, p, n), "hard" by anchor, "semi-hard" by (a, p).
    """
    x = as_embeddings(embeddings)
    y = as_labels(labels, x)
    return mine_triplets_from_distances(y, pairwise_distances(x, metric), strategy)


def mine_triplets_from_distances(labels, distances, strategy="semi-hard"):
    """Like :func:`mine_triplets`, from a precomputed [B, B] distance matrix."""
    check_choice("strategy", strategy, STRATEGIES)
    distances = tf.stop_gradient(as_embeddings(distances, name="distances"))
    y = as_labels(labels, distances)
    pos, neg = positive_mask(y), negative_mask(y)
    has_neg = tf.reduce_any(neg, axis=1)
    if strategy == "hard":
        anchors = tf.where(tf.reduce_any(pos, axis=1) & has_neg)[:, 0]
        return _triplets(
            anchors,
            tf.gather(hardest_positives(distances, pos), anchors),
            tf.gather(closest_negatives(distances, neg), anchors),
        )
    if strategy == "semi-hard":
        pairs = tf.where(pos & has_neg[:, None])
        negatives = tf.gather_nd(semi_hard_negatives(y, distances), pairs)
        return _triplets(pairs[:, 0], pairs[:, 1], negatives)
    check_triplet_budget(enumerated_values(pos), "mining='all'")
    pairs = tf.where(pos)
    pair_and_negative = tf.where(tf.gather(neg, pairs[:, 0]))  # [T, 2]: (pair, n)
    chosen = tf.gather(pairs, pair_and_negative[:, 0])
    return _triplets(chosen[:, 0], chosen[:, 1], pair_and_negative[:, 1])


def _triplets(a, p, n):
    return Triplets(*(tf.cast(t, tf.int32) for t in (a, p, n)))


def enumerated_values(pos):
    """A bound on the values the "all" miner holds at once: rounds x B x B.

    (rounds = the most positives of any anchor: K - 1 in a P x K batch, so
    this is B^2 (K - 1) >= the number of valid triplets.)
    """
    rounds = tf.reduce_max(tf.reduce_sum(tf.cast(pos, tf.int64), axis=1))
    batch = tf.shape(pos, out_type=tf.int64)[0]
    return rounds * batch * batch


def check_triplet_budget(count, what):
    """Refuse (ValueError eagerly, InvalidArgumentError in a graph) above MAX_TRIPLET_ELEMENTS.

    ``count`` is the number of values a computation would hold at once,
    :func:`enumerated_values`. Under XLA (``jit_compile=True``) TensorFlow
    drops runtime assertions, so there the check cannot fire.
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
