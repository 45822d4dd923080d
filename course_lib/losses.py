"""Ranking losses: contrastive, triplet (all / hard / semi-hard, soft margin), N-pairs, angular.

Each function takes ``(labels, embeddings, **options)`` and returns a scalar
float32 tensor. ``labels`` are class ids shaped (B,) or (B, 1), int or
float; ``embeddings`` is [B, D] (float16/bfloat16 are cast up to float32).
Definitions, reductions and degenerate batches follow COURSE_GUIDE section 1;
every mean over an empty set is 0, never NaN.

The Keras classes at the bottom wrap the functions for ``model.compile``:

    model.compile(optimizer="adam", loss=TripletLoss(mining="semi-hard"))
    model.fit(images, labels)          # y_true = labels, y_pred = embeddings
"""

from __future__ import annotations

import math
import numbers

import keras
import tensorflow as tf

from course_lib import mining as miners
from course_lib._checks import as_embeddings, as_labels, check_choice, check_positive
from course_lib.distances import METRICS, paired_distances, pairwise_distances
from course_lib.mining import STRATEGIES, negative_mask, positive_mask

__all__ = [
    "contrastive_loss", "triplet_loss", "npairs_loss", "angular_loss",
    "ContrastiveLoss", "TripletLoss", "NPairsLoss", "AngularLoss",
]


def masked_mean(values, mask):
    """Mean of ``values`` where ``mask`` is True; 0 (and zero gradient) when none is."""
    mask = tf.cast(mask, values.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(values * mask), tf.reduce_sum(mask))


def _inputs(labels, embeddings):
    x = as_embeddings(embeddings)
    return as_labels(labels, x), x


# ---------------------------------------------------------------- contrastive
def contrastive_loss(labels, embeddings, margin=1.0, metric="euclidean"):
    """Contrastive loss (Hadsell, Chopra, LeCun 2006), mean over ordered pairs i != j.

        same class:       L = 1/2 D(i, j)^2
        different class:  L = 1/2 max(0, m - D(i, j))^2

    The paper writes Y = 0 for a similar pair; here the labels are class ids
    and "similar" means the same id. Every negative pair closer than the
    margin pushes *both* of its points apart.
    """
    margin = check_positive("margin", margin)
    check_choice("metric", metric, METRICS)
    y, x = _inputs(labels, embeddings)
    d = pairwise_distances(x, metric)
    same = tf.equal(y[:, None], y[None, :])
    per_pair = 0.5 * tf.where(same, tf.square(d), tf.square(tf.nn.relu(margin - d)))
    off_diagonal = tf.logical_not(tf.eye(tf.shape(y)[0], dtype=tf.bool))
    return masked_mean(per_pair, off_diagonal)


# -------------------------------------------------------------------- triplet
def triplet_loss(labels, embeddings, margin=1.0, mining="semi-hard", metric="euclidean", soft=False):
    """Triplet loss  [D(a, p) - D(a, n) + m]_+  over mined triplets.

    ``mining``:
      * ``"all"``: every valid triplet; mean over the triplets with loss > 0
        (Hermans' "batch all, != 0"). Enumerates the O(B^3) triplets one
        round of positives at a time: O(B^2 K) time for a P x K batch (B^3
        when the batch has few classes), O(B^2) memory.
      * ``"hard"``: per anchor its farthest positive and closest negative;
        mean over anchors with >= 1 positive and >= 1 negative. O(B^2).
      * ``"semi-hard"``: per positive pair (a, p) the closest negative with
        D(a, n) > D(a, p), else the farthest negative; mean over positive pairs
        whose anchor has >= 1 negative. O(B^2) memory, O(B^2 K) time.

    ``soft=True`` replaces [x + m]_+ by softplus(x) (Hermans' soft margin);
    ``margin`` is then unused. See :mod:`course_lib.mining` for the miners.
    """
    margin = check_positive("margin", margin)
    check_choice("mining", mining, STRATEGIES)
    check_choice("metric", metric, METRICS)
    if not isinstance(soft, bool):
        raise TypeError(f"`soft` must be True or False, got {soft!r}.")
    y, x = _inputs(labels, embeddings)
    d = pairwise_distances(x, metric)
    neg = negative_mask(y)
    # the hinge h(gap), gap = D(a, p) - D(a, n), and its slope h'(gap)
    if soft:
        hinge, slope = tf.nn.softplus, tf.sigmoid
    else:
        def hinge(gap):
            return tf.nn.relu(gap + margin)

        def slope(gap):
            return tf.cast(gap + margin > 0, gap.dtype)

    if mining == "all":
        return _batch_all(d, y, neg, hinge, slope, soft)
    mined, has_neg = tf.stop_gradient(d), tf.reduce_any(neg, axis=1)
    if mining == "hard":
        pos = positive_mask(y)
        p, n = miners.hardest_positives(mined, pos), miners.closest_negatives(mined, neg)
        valid = tf.reduce_any(pos, axis=1) & has_neg
        total, count, grad = _triplet_terms(x, mined, p, n, valid, hinge, slope, metric)
        return tf.math.divide_no_nan(_with_gradient(total, x, grad), count)
    return _semi_hard(x, mined, y, neg, has_neg, hinge, slope, metric)


def _semi_hard(x, mined, y, neg, has_neg, hinge, slope, metric):
    """Mean hinge over positive pairs (a, p) whose anchor has a negative, semi-hard n.

    The rounds of positives run without gradient: each round mines one
    triplet per anchor and adds up its terms (:func:`_triplet_terms`),
    gradient included, so the [B, B] distances are only searched.
    """
    search = miners.semi_hard_search(mined, neg)
    fixed = tf.stop_gradient(x)  # nothing inside the loop is differentiated through it

    def per_round(p, in_round, sums):
        terms = _triplet_terms(fixed, mined, p, search(p), in_round & has_neg, hinge, slope, metric)
        return tuple(s + t for s, t in zip(sums, terms))

    initial = (tf.constant(0.0), tf.constant(0.0), tf.zeros_like(fixed))
    total, count, grad = miners.over_positive_rounds(y, per_round, initial)
    return tf.math.divide_no_nan(_with_gradient(total, x, grad), count)


def _triplet_terms(x, mined, p, n, valid, hinge, slope, metric):
    """For the triplets (a, p[a], n[a]) where ``valid`` [B]: (sum of h(gap), count, d sum / dx).

    gap = D(a, p) - D(a, n) is read from the mined distances; the gradient
    is taken on the triplets' own embeddings (:func:`_triplet_gradient`),
    O(B dim), never through the [B, B] matrix.
    """
    gap = tf.gather(mined, p, batch_dims=1) - tf.gather(mined, n, batch_dims=1)
    valid = tf.cast(valid, mined.dtype)
    grad = _triplet_gradient(tf.stop_gradient(x), p, n, slope(gap) * valid, metric)
    return tf.reduce_sum(hinge(gap) * valid), tf.reduce_sum(valid), grad


def _with_gradient(value, wrt, grad):
    """``value``, with ``grad`` as its gradient w.r.t. ``wrt``.

    ``value + sum(grad * (wrt - stop_gradient(wrt)))``: the second term is 0
    but differentiates to ``grad``. The loops that mine or enumerate triplets
    run without gradient and compute it themselves, so TensorFlow keeps no
    per-round tensors for a backward pass. (First derivatives only.)
    """
    return value + tf.reduce_sum(grad * (wrt - tf.stop_gradient(wrt)))


def _triplet_gradient(x, p, n, slope, metric):
    """d/dx of  sum_a slope[a] * (D(x_a, x_p[a]) - D(x_a, x_n[a])), [B, dim].

    O(B dim) per call: only the B triplets' embeddings are differentiated.
    """
    with tf.GradientTape() as tape:
        tape.watch(x)
        d_ap = paired_distances(x, tf.gather(x, p), metric)
        d_an = paired_distances(x, tf.gather(x, n), metric)
        weighted = tf.reduce_sum(slope * (d_ap - d_an))
    return tf.convert_to_tensor(tape.gradient(weighted, x))


def _batch_all(d, y, neg, hinge, slope, soft):
    """Mean of hinge(D(a,p) - D(a,n)) over all valid triplets with a positive loss.

    softplus is positive everywhere, so with ``soft`` every valid triplet
    counts, also one whose softplus underflows to 0 in float32.

    The rounds run without gradient and add up W = dL/dD as they go: with
    h' the hinge's slope, each triplet adds h' at (a, p) and -h' at (a, n).
    Memory stays O(B^2): no round keeps its [B, B] slice for a backward pass.
    """
    mined = tf.stop_gradient(d)
    anchors = tf.range(tf.shape(d)[0])

    def per_round(p, in_round, state):
        total, active, weights = state
        gap = tf.gather(mined, p, batch_dims=1)[:, None] - mined  # [B, B]: anchor a, negative n
        valid = tf.cast(neg & in_round[:, None], d.dtype)
        h_prime = slope(gap) * valid
        counted = valid if soft else h_prime  # the triplets with loss > 0
        weights = tf.tensor_scatter_nd_add(weights - h_prime, tf.stack([anchors, p], 1), tf.reduce_sum(h_prime, 1))
        return total + tf.reduce_sum(hinge(gap) * valid), active + tf.reduce_sum(counted), weights

    initial = (tf.constant(0.0), tf.constant(0.0), tf.zeros_like(mined))
    total, active, weights = miners.over_positive_rounds(y, per_round, initial)
    return tf.math.divide_no_nan(_with_gradient(total, d, weights), active)


# -------------------------------------------------------------------- N-pairs
def npairs_loss(labels, embeddings, l2_reg=0.002):
    """Multi-class N-pair loss (Sohn 2016).

    For each class with >= 2 samples, the anchor a_i is its first and the
    positive p_i its second occurrence in batch order. With S = A P^T
    (dot products), the loss is the softmax cross-entropy of row i with
    target i, averaged over the N pairs, plus
    ``l2_reg * 0.25 * (mean ||a_i||^2 + mean ||p_i||^2)``.
    0 when the batch has fewer than 2 pairs (no negative to compare with).
    """
    if not isinstance(l2_reg, numbers.Real) or isinstance(l2_reg, bool) or l2_reg < 0:
        raise ValueError(f"`l2_reg` must be a number >= 0, got {l2_reg!r}.")
    y, x = _inputs(labels, embeddings)
    same = tf.equal(y[:, None], y[None, :])
    earlier = tf.linalg.band_part(tf.ones_like(same, dtype=tf.int32), -1, 0) - tf.eye(
        tf.shape(y)[0], dtype=tf.int32
    )  # earlier[i, j] = 1 when j < i
    occurrence = tf.reduce_sum(tf.cast(same, tf.int32) * earlier, axis=1)  # 0 = first, 1 = second
    is_second = tf.equal(occurrence, 1)
    partner_mask = same & is_second[None, :]  # row i: the second occurrence of i's class
    is_anchor = tf.equal(occurrence, 0) & tf.reduce_any(partner_mask, axis=1)
    partner = tf.argmax(tf.cast(partner_mask, tf.int32), axis=1, output_type=tf.int32)
    positives = tf.gather(x, partner)  # p_i beside each anchor a_i
    logits = tf.matmul(x, positives, transpose_b=True)  # S[i, j] = a_i . p_j
    logits = tf.where(is_anchor[None, :], logits, -float("inf"))
    cross_entropy = tf.reduce_logsumexp(tf.where(is_anchor[:, None], logits, 0.0), axis=1) - tf.linalg.diag_part(
        tf.where(is_anchor[:, None], logits, 0.0)
    )
    num_pairs = tf.reduce_sum(tf.cast(is_anchor, tf.float32))
    l2 = 0.25 * l2_reg * (
        masked_mean(tf.reduce_sum(tf.square(x), 1), is_anchor)
        + masked_mean(tf.reduce_sum(tf.square(positives), 1), is_anchor)
    )
    loss = masked_mean(cross_entropy, is_anchor) + l2
    return tf.where(num_pairs >= 2, loss, 0.0)


# -------------------------------------------------------------------- angular
def angular_loss(labels, embeddings, alpha_degrees=45.0):
    """Angular loss, N-pair-angular form (Wang et al. 2017).

    Embeddings are L2-normalised; t = tan^2(alpha) with alpha in *degrees*.
    For each ordered positive pair (a, p) over all negatives n of a:

        f(a, p, n) = 4 t (x_a + x_p) . x_n - 2 (1 + t) x_a . x_p
        L(a, p)    = log(1 + sum_n exp f(a, p, n))

    averaged over positive pairs with >= 1 negative. Wang et al. bound the
    angle at the negative through the equivalent constraint
    tan(n') = ||x_a - x_p|| / (2 ||x_n - x_c||) <= tan(alpha), with x_c the
    pair's midpoint (x_a + x_p) / 2: the negative is pushed away from x_c in
    proportion to the pair's size, so the loss is scale-invariant. Enumerates
    (pair, negative) combinations, O(B^3), one positive round at a time:
    O(B^2 K) time for a P x K batch, O(B^2) memory; the rounds carry
    dL/d(x_i . x_j) out (see :func:`_with_gradient`).
    """
    if not isinstance(alpha_degrees, numbers.Real) or isinstance(alpha_degrees, bool):
        raise TypeError(f"`alpha_degrees` must be a number, got {type(alpha_degrees).__name__}.")
    if not 0.0 < alpha_degrees < 90.0:
        raise ValueError(f"`alpha_degrees` must lie in (0, 90) degrees, got {alpha_degrees}.")
    t = math.tan(math.radians(alpha_degrees)) ** 2
    y, x = _inputs(labels, embeddings)
    x = tf.math.l2_normalize(x, axis=1, epsilon=1e-12)
    sim = tf.matmul(x, x, transpose_b=True)  # x_i . x_j
    neg = negative_mask(y)
    has_neg = tf.reduce_any(neg, axis=1)

    fixed = tf.stop_gradient(sim)
    anchors = tf.range(tf.shape(sim)[0])

    def per_round(p, in_round, state):
        total, count, weights = state
        s_ap = tf.gather(fixed, p, batch_dims=1)  # [B]
        f = 4.0 * t * (fixed + tf.gather(fixed, p)) - 2.0 * (1.0 + t) * s_ap[:, None]  # [a, n]
        f = tf.where(neg, f, -float("inf"))
        f = tf.where(has_neg[:, None], f, 0.0)  # a row with no negative: finite, and not valid
        lse = tf.reduce_logsumexp(f, axis=1)
        valid = tf.cast(in_round & has_neg, tf.float32)
        # dL/df = sigmoid(lse) softmax(f): a [B, B] weight on sim[a, n] and on sim[p[a], n] (times
        # 4t), and minus their row sum on sim[a, p[a]] (times 2 (1 + t)).
        w = tf.exp(f - lse[:, None]) * (tf.sigmoid(lse) * valid)[:, None]
        weights = tf.tensor_scatter_nd_add(weights + 4.0 * t * w, p[:, None], 4.0 * t * w)
        weights = tf.tensor_scatter_nd_add(
            weights, tf.stack([anchors, p], 1), -2.0 * (1.0 + t) * tf.reduce_sum(w, axis=1)
        )
        return total + tf.reduce_sum(tf.nn.softplus(lse) * valid), count + tf.reduce_sum(valid), weights

    initial = (tf.constant(0.0), tf.constant(0.0), tf.zeros_like(fixed))
    total, count, weights = miners.over_positive_rounds(y, per_round, initial)
    return tf.math.divide_no_nan(_with_gradient(total, sim, weights), count)


# -------------------------------------------------------- Keras loss classes
class _RankingLoss(keras.losses.Loss):
    """Base: ``y_true`` = class ids, ``y_pred`` = embeddings; computed in float32."""

    _function = None

    def __init__(self, name=None, reduction="sum_over_batch_size", **options):
        super().__init__(name=name or self.__class__.__name__, reduction=reduction, dtype="float32")
        # Validate now, so a bad option fails at compile() time, not inside fit().
        probe_labels = tf.constant([0, 0, 1, 1])
        type(self)._function(probe_labels, tf.zeros([4, 2]), **options)
        self.options = options

    def __call__(self, y_true, y_pred, sample_weight=None):
        # keras.losses.Loss.__call__ would cast y_true to float32, and class ids
        # above 2**24 would merge; ids are only compared, so keep their dtype.
        if sample_weight is not None:
            raise ValueError(
                f"{type(self).__name__} is a batch-level ranking loss: `sample_weight` is not supported."
            )
        with tf.name_scope(self.name):
            return self.call(y_true, y_pred)

    def call(self, y_true, y_pred):
        return type(self)._function(y_true, y_pred, **self.options)

    def get_config(self):
        return {**super().get_config(), **self.options}


@keras.saving.register_keras_serializable(package="course_lib")
class ContrastiveLoss(_RankingLoss):
    """Keras wrapper of :func:`contrastive_loss`."""

    _function = staticmethod(contrastive_loss)

    def __init__(self, margin=1.0, metric="euclidean", **kwargs):
        super().__init__(margin=margin, metric=metric, **kwargs)


@keras.saving.register_keras_serializable(package="course_lib")
class TripletLoss(_RankingLoss):
    """Keras wrapper of :func:`triplet_loss`: ``TripletLoss(mining="semi-hard")``."""

    _function = staticmethod(triplet_loss)

    def __init__(self, margin=1.0, mining="semi-hard", metric="euclidean", soft=False, **kwargs):
        super().__init__(margin=margin, mining=mining, metric=metric, soft=soft, **kwargs)


@keras.saving.register_keras_serializable(package="course_lib")
class NPairsLoss(_RankingLoss):
    """Keras wrapper of :func:`npairs_loss`."""

    _function = staticmethod(npairs_loss)

    def __init__(self, l2_reg=0.002, **kwargs):
        super().__init__(l2_reg=l2_reg, **kwargs)


@keras.saving.register_keras_serializable(package="course_lib")
class AngularLoss(_RankingLoss):
    """Keras wrapper of :func:`angular_loss`."""

    _function = staticmethod(angular_loss)

    def __init__(self, alpha_degrees=45.0, **kwargs):
        super().__init__(alpha_degrees=alpha_degrees, **kwargs)
