"""Ranking losses: contrastive, triplet (all / hard / semi-hard / random, soft margin), N-pairs, angular,
and the similarity losses SupCon, NT-Xent and multi-similarity.

Each function takes ``(labels, embeddings, **options)`` and returns a scalar
float32 tensor. ``labels`` are class ids shaped (B,) or (B, 1), int or
float; ``embeddings`` is [B, D] (float16/bfloat16 are cast up to float32).
Definitions, reductions and degenerate batches: docs/definitions.md; every
mean over an empty set is 0, never NaN. Each option's default is the one in
the function's signature (:func:`defaults` reads them for the command line
and the training loop).

The shape of a triplet loss (lesson 03) is the shape of the code below:

    distances D -> miner picks (a, p, n) -> gap D(a, p) - D(a, n) -> hinge -> mean

The Keras classes at the bottom wrap the functions for ``model.compile``:

    model.compile(optimizer="adam", loss=TripletLoss(mining="semi-hard"))
    model.fit(images, labels)          # y_true = labels, y_pred = embeddings
"""

from __future__ import annotations

import math
from collections import namedtuple

import keras
import tensorflow as tf

from course_lib import mining as miners
from course_lib._checks import as_embeddings, as_labels, check_non_negative, check_number, check_positive
from course_lib.distances import _paired, _pairwise
from course_lib.mining import negative_mask, positive_mask
from course_lib.options import METRICS, STRATEGIES, check_choice, defaults_of

__all__ = [
    "contrastive_loss", "triplet_loss", "triplet_loss_and_statistics", "npairs_loss", "angular_loss",
    "supcon_loss", "nt_xent_loss", "multi_similarity_loss", "defaults",
    "ContrastiveLoss", "TripletLoss", "NPairsLoss", "AngularLoss",
    "SupConLoss", "NTXentLoss", "MultiSimilarityLoss",
]


def masked_mean(values, mask):
    """Mean of ``values`` where ``mask`` is True; 0 (and zero gradient) when none is."""
    mask = tf.cast(mask, values.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(values * mask), tf.reduce_sum(mask))


def _inputs(labels, embeddings):
    """The public edge: checked labels [B] and float32 embeddings [B, D]."""
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
    d = _pairwise(x, metric)
    same = tf.equal(y[:, None], y[None, :])
    per_pair = 0.5 * tf.where(same, tf.square(d), tf.square(tf.nn.relu(margin - d)))
    return masked_mean(per_pair, tf.logical_not(tf.eye(tf.shape(y)[0], dtype=tf.bool)))


# -------------------------------------------------------------------- triplet
TripletStatistics = namedtuple(
    "TripletStatistics", ["loss", "active_fraction", "mean_positive_distance", "mean_negative_distance"])
TripletStatistics.__doc__ = """The triplet loss of a batch and what its one mining pass saw.

``active_fraction``: share of the mined triplets whose hinge is not flat,
D(a, p) - D(a, n) + m > 0 (with the soft margin, which has no m: D(a, p) >
D(a, n), the triplet is still in the wrong order). ``mean_positive_distance``
/ ``mean_negative_distance``: mean D over the positive / negative pairs.
"""


def triplet_loss(labels, embeddings, margin=0.2, mining="semi-hard", metric="euclidean", soft=False):
    """Triplet loss  [D(a, p) - D(a, n) + m]_+  over mined triplets.

    ``mining``:
      * ``"all"``: every valid triplet; mean over the triplets with loss > 0
        (Hermans' "batch all, != 0"). O(B^2 K) time for a P x K batch
        (B^3 when the batch has few classes), O(B^2) memory.
      * ``"hard"``: per anchor its farthest positive and closest negative;
        mean over anchors with >= 1 positive and >= 1 negative. O(B^2).
      * ``"semi-hard"``: per positive pair (a, p) the closest negative with
        D(a, n) > D(a, p), else the farthest negative; mean over positive pairs
        whose anchor has >= 1 negative. O(B^2) memory, O(B^2 K) time.
      * ``"random"``: no mining; per anchor one positive and one negative
        drawn uniformly among its valid ones (seeded by the batch itself:
        the same batch gives the same triplets); mean over anchors with
        >= 1 positive and >= 1 negative, easy triplets (loss 0) included. O(B^2).

    ``soft=True`` replaces [x + m]_+ by softplus(x) (Hermans' soft margin);
    ``margin`` is then unused. The default m = 0.2 is FaceNet's, for
    embeddings on the unit sphere (distances in [0, 2]). See
    :mod:`course_lib.mining` for the miners.
    """
    return triplet_loss_and_statistics(labels, embeddings, margin, mining, metric, soft).loss


def triplet_loss_and_statistics(labels, embeddings, margin=0.2, mining="semi-hard", metric="euclidean",
                                soft=False):
    """:func:`triplet_loss` and the statistics of its triplets: a :class:`TripletStatistics`.

    Training reports these, so what it shows is what the loss used: one
    mining pass per batch.
    """
    margin = check_positive("margin", margin)
    check_choice("mining", mining, STRATEGIES)
    check_choice("metric", metric, METRICS)
    if not isinstance(soft, bool):
        raise TypeError(f"`soft` must be True or False, got {soft!r}.")
    y, x = _inputs(labels, embeddings)
    d = _pairwise(x, metric)
    if mining == "all":
        loss, active = _batch_all(y, d, margin, soft)
    else:
        loss, active = _mined_triplets(y, x, tf.stop_gradient(d), mining, margin, soft, metric)
    d = tf.stop_gradient(d)
    return TripletStatistics(loss, active, masked_mean(d, positive_mask(y)), masked_mean(d, negative_mask(y)))


def _hinge(gap, margin, soft):
    """The loss of a triplet with gap = D(a, p) - D(a, n): [gap + m]_+, or softplus(gap)."""
    return tf.nn.softplus(gap) if soft else tf.nn.relu(gap + margin)


def _is_active(gap, margin, soft):
    return gap + (0.0 if soft else margin) > 0.0


def _mined_triplets(y, x, d, mining, margin, soft, metric):
    """(mean loss, active fraction) over the hard, semi-hard or random triplets.

    The miner reads the distances ``d`` (no gradient) and hands out B
    triplets at a time (:func:`course_lib.mining.over_mined_triplets`); their
    distances are recomputed from the triplets' own embeddings, so ordinary
    autodiff differentiates B triplets, O(B D), never the [B, B] matrix.
    """

    def add(triplets, valid, sums):
        gap = _paired(x, tf.gather(x, triplets.positive), metric) - _paired(x, tf.gather(x, triplets.negative), metric)
        valid = tf.cast(valid, tf.float32)
        terms = (_hinge(gap, margin, soft), tf.ones_like(gap), tf.cast(_is_active(gap, margin, soft), tf.float32))
        return tuple(s + tf.reduce_sum(t * valid) for s, t in zip(sums, terms))

    total, count, active = miners.over_mined_triplets(y, d, mining, add, (0.0, 0.0, 0.0))
    return tf.math.divide_no_nan(total, count), tf.math.divide_no_nan(active, count)


def _batch_all(y, d, margin, soft):
    """(mean loss over the triplets with loss > 0, active fraction) over every valid triplet.

    Round r of positives, for a block of anchors a (rows of D): anchor a, its
    r-th positive p[a], every negative n (columns). softplus is positive
    everywhere, so with ``soft`` every valid triplet counts in the mean.
    """

    def round_sums(a, p, in_round, d):  # d: the rows a of D
        valid = tf.not_equal(tf.gather(y, a)[:, None], y[None, :]) & in_round[:, None]  # [a, n]
        gap = tf.where(valid, tf.gather(d, p, batch_dims=1)[:, None] - d, -float("inf"))  # no triplet: loss 0
        active = tf.math.count_nonzero(_is_active(gap, margin, soft), dtype=tf.float32)
        total = tf.reduce_sum(_hinge(gap, margin, soft))
        return total, (active, tf.math.count_nonzero(valid, dtype=tf.float32))

    total, (active, valid) = _sum_over_rounds_saving_memory(y, d, round_sums, num_counts=2)
    return tf.math.divide_no_nan(total, valid if soft else active), tf.math.divide_no_nan(active, valid)


#: The rounds of batch-all and angular work on blocks of about this many
#: values of the [B, B] matrix (rows of it): 4 MiB of float32.
BLOCK_VALUES = 2**20


def _sum_over_rounds_saving_memory(labels, wrt, round_sums, num_counts):
    """MEMORY-SAVING VARIANT. Sum ``round_sums`` over the rounds of positives, gradient included.

    ``round_sums(a, p, in_round, rows) -> (value, counts)``: one round's sum of
    terms for a block of anchors ``a`` [b], ``rows`` = the rows a of ``wrt``
    [b, B] (``p``, ``in_round`` as in :func:`course_lib.mining.over_positive_rounds`,
    for these anchors): a scalar differentiable in ``rows``, and ``num_counts``
    scalar counts. Returns (the summed value, the summed counts).

    Why not plain autodiff: batch-all and angular enumerate every (a, p, n),
    B^2 (K - 1) values in a P x K batch; differentiating through the loop
    would keep them all for the backward pass (several GiB at B = 4096).
    Here the anchors go a block of rows at a time (about BLOCK_VALUES
    values); each round differentiates its block's sum at once (an inner
    GradientTape) and only the block's running gradient leaves the loop.
    Blocks matter for time too: a [B, B] float32 temporary is 64 MiB at
    B = 4096, a fresh allocation that the kernel zero-fills page by page
    (whole-matrix rounds spent more CPU time there than computing); a 4 MiB
    block is reused from the heap and stays in cache. The value returned
    hands the blocks' gradients G [B, B] on to ``wrt`` (first derivatives only).
    """
    fixed = tf.stop_gradient(wrt)
    size = fixed.shape[0] if fixed.shape[0] is not None else tf.shape(fixed)[0]  # an int when known (XLA)
    if isinstance(size, int):
        rows_per_block = max(1, min(size, BLOCK_VALUES // max(size, 1)))
    else:
        rows_per_block = tf.maximum(1, tf.minimum(size, BLOCK_VALUES // tf.maximum(size, 1)))

    blocks = tf.maximum(1, (size + rows_per_block - 1) // rows_per_block)  # an empty batch: one empty block

    def per_block(i, value, counts, grads):
        ids = i * rows_per_block + tf.range(rows_per_block)
        a = tf.minimum(ids, size - 1)  # the last block's extra rows repeat the last anchor, out of every round
        block = tf.cond(tf.shape(fixed)[0] > 0, lambda: tf.gather(fixed, a), lambda: tf.zeros([rows_per_block, size]))

        def per_round(p, in_round, state):
            value, counts, grad = state
            with tf.GradientTape() as tape:
                tape.watch(block)
                round_value, round_counts = round_sums(a, tf.gather(p, a), tf.gather(in_round, a) & (ids < size), block)
            round_grad = tape.gradient(round_value, block, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            counts = tuple(c + r for c, r in zip(counts, round_counts))
            return value + round_value, counts, grad + tf.convert_to_tensor(round_grad)

        value, counts, grad = miners.over_positive_rounds(labels, per_round, (value, counts, tf.zeros_like(block)))
        return i + 1, value, counts, grads.write(i, grad)

    grads = tf.TensorArray(tf.float32, size=blocks, element_shape=[None, None], infer_shape=False)
    initial = (0, tf.constant(0.0), (tf.constant(0.0),) * num_counts, grads)
    _, value, counts, grads = tf.while_loop(lambda i, *_: i < blocks, per_block, initial, parallel_iterations=1)
    grad = tf.stop_gradient(grads.concat()[:size])

    @tf.custom_gradient
    def with_gradient(wrt):  # autodiff never enters the loop, so TensorFlow keeps no per-round tensors for it
        return tf.stop_gradient(value), lambda upstream: upstream * grad

    return with_gradient(wrt), counts


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
    l2_reg = check_non_negative("l2_reg", l2_reg)
    y, x = _inputs(labels, embeddings)
    same = tf.cast(tf.equal(y[:, None], y[None, :]), tf.int32)
    earlier = tf.linalg.band_part(tf.ones_like(same), -1, 0) - tf.eye(tf.shape(y)[0], dtype=tf.int32)  # j < i
    occurrence = tf.reduce_sum(same * earlier, axis=1)  # 0 = first of its class, 1 = second
    partner_mask = tf.cast(same, tf.bool) & tf.equal(occurrence, 1)[None, :]  # row i: its class's second
    is_anchor = tf.equal(occurrence, 0) & tf.reduce_any(partner_mask, axis=1)
    positives = tf.gather(x, tf.argmax(tf.cast(partner_mask, tf.int32), axis=1, output_type=tf.int32))
    logits = tf.matmul(x, positives, transpose_b=True)  # S[i, j] = a_i . p_j
    logits = tf.where(is_anchor[:, None] & is_anchor[None, :], logits, -float("inf"))
    logits = tf.where(is_anchor[:, None], logits, 0.0)  # rows that are not anchors: finite, unused
    cross_entropy = tf.reduce_logsumexp(logits, axis=1) - tf.linalg.diag_part(logits)
    l2 = 0.25 * l2_reg * (masked_mean(tf.reduce_sum(tf.square(x), 1), is_anchor)
                          + masked_mean(tf.reduce_sum(tf.square(positives), 1), is_anchor))
    loss = masked_mean(cross_entropy, is_anchor) + l2
    return tf.where(tf.reduce_sum(tf.cast(is_anchor, tf.int32)) >= 2, loss, 0.0)


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
    (pair, negative) combinations one round of positives at a time: O(B^2 K)
    time for a P x K batch, O(B^2) memory.
    """
    alpha = check_number("alpha_degrees", alpha_degrees)
    if not 0.0 < alpha < 90.0:
        raise ValueError(f"`alpha_degrees` must lie in (0, 90) degrees, got {alpha_degrees}.")
    t = math.tan(math.radians(alpha)) ** 2
    y, x = _inputs(labels, embeddings)
    x = tf.math.l2_normalize(x, axis=1, epsilon=1e-12)

    def round_sums(a, p, in_round, sim_a):  # sim_a: the rows a of sim, sim[i, j] = x_i . x_j
        # (a, p) and (p, a) are the same term (f is symmetric in a and p, who share their negatives), so
        # the gradient (a, p) sends to row p of sim is the one (p, a) sends to row p as anchor: each block
        # reads its positives' rows as constants and differentiates its anchors' rows twice over.
        twice = 2.0 * sim_a - tf.stop_gradient(sim_a)  # the value of sim_a, twice its gradient
        f = 4.0 * t * (twice + tf.gather(fixed, p)) - 2.0 * (1.0 + t) * tf.gather(sim_a, p, batch_dims=1)[:, None]
        neg = tf.not_equal(tf.gather(y, a)[:, None], y[None, :])
        has_negative = tf.reduce_any(neg, axis=1)
        f = tf.where(neg, f, -float("inf"))  # [a, n]: only the negatives of a
        lse = tf.reduce_logsumexp(tf.where(has_negative[:, None], f, 0.0), axis=1)
        valid = tf.cast(in_round & has_negative, tf.float32)
        return tf.reduce_sum(tf.nn.softplus(lse) * valid), (tf.reduce_sum(valid),)

    sim = tf.matmul(x, x, transpose_b=True)
    fixed = tf.stop_gradient(sim)
    total, (count,) = _sum_over_rounds_saving_memory(y, sim, round_sums, num_counts=1)
    return tf.math.divide_no_nan(total, count)


# ------------------------------------------------ similarity losses (softmax)
# SupCon, NT-Xent and multi-similarity work on cosine similarities s_ij of
# L2-normalised embeddings (an all-zero row stays zero: s = 0 with everything).
# P(a) = {p != a : y_p = y_a}, N(a) = {n : y_n != y_a}.
def _cosine_similarities(x):
    unit = tf.math.l2_normalize(x, axis=1, epsilon=1e-12)
    return tf.matmul(unit, unit, transpose_b=True)


def _log_sum_exp(logits, mask):
    """Per row, log sum_{k : mask[a, k]} exp(logits[a, k]), computed stably; 0 for a row with no k.

    Masked entries become -inf *before* exp, and an empty row is replaced
    before log, so no NaN reaches the value or the gradient.
    """
    top = tf.reduce_max(tf.where(mask, logits, -float("inf")), axis=1, keepdims=True)
    top = tf.stop_gradient(tf.where(tf.math.is_finite(top), top, 0.0))
    total = tf.reduce_sum(tf.exp(tf.where(mask, logits - top, -float("inf"))), axis=1)
    return tf.math.log(tf.where(total > 0.0, total, 1.0)) + top[:, 0]


def supcon_loss(labels, embeddings, temperature=0.1):
    """Supervised contrastive loss (Khosla et al. 2020, L_out).

    For each anchor a with a positive:

        l_a = -(1/|P(a)|) sum_{p in P(a)} [ s_ap/t - log sum_{k != a} exp(s_ak/t) ]

    the mean over those anchors; 0 when none has a positive. Every other
    sample of the batch is in the softmax's denominator, the positives too.
    """
    temperature = check_positive("temperature", temperature)
    y, x = _inputs(labels, embeddings)
    logits = _cosine_similarities(x) / temperature
    others = tf.logical_not(tf.eye(tf.shape(y)[0], dtype=tf.bool))
    log_softmax = logits - _log_sum_exp(logits, others)[:, None]
    pos = positive_mask(y)
    num_positives = tf.reduce_sum(tf.cast(pos, tf.float32), axis=1)
    per_anchor = -tf.reduce_sum(tf.where(pos, log_softmax, 0.0), axis=1) / tf.maximum(num_positives, 1.0)
    return masked_mean(per_anchor, num_positives > 0)


def nt_xent_loss(labels, embeddings, temperature=0.1):
    """NT-Xent, the normalised temperature-scaled cross-entropy (SimCLR, Chen et al. 2020).

    For each ordered positive pair (a, p), a softmax over p and the negatives of a:

        l_ap = -log( exp(s_ap/t) / (exp(s_ap/t) + sum_{n in N(a)} exp(s_an/t)) )
             = softplus( log sum_{n in N(a)} exp(s_an/t) - s_ap/t )

    the mean over the ordered positive pairs; 0 when there is none. With
    exactly two samples per label (two views of one image) this is SimCLR's.
    """
    temperature = check_positive("temperature", temperature)
    y, x = _inputs(labels, embeddings)
    logits = _cosine_similarities(x) / temperature
    neg = negative_mask(y)
    per_pair = tf.nn.softplus(_log_sum_exp(logits, neg)[:, None] - logits)
    per_pair = tf.where(tf.reduce_any(neg, axis=1)[:, None], per_pair, 0.0)  # no negative: l_ap = 0
    return masked_mean(per_pair, positive_mask(y))


def multi_similarity_loss(labels, embeddings, alpha=2.0, beta=50.0, base=0.5, epsilon=0.1):
    """Multi-similarity loss with its pair mining (Wang et al. 2019).

    Mining, on the values (no gradient through the choice): keep the
    negatives with s_an > min_{p in P(a)} s_ap - epsilon and the positives
    with s_ap < max_{n in N(a)} s_an + epsilon. Then

        l_a = (1/alpha) log(1 + sum_{kept p} exp(-alpha (s_ap - base)))
            + (1/beta)  log(1 + sum_{kept n} exp( beta (s_an - base)))

    for an anchor with P(a) and N(a) both non-empty (l_a = 0 otherwise: it
    keeps nothing); the loss is the mean of l_a over all B anchors.
    """
    alpha, beta = check_positive("alpha", alpha), check_positive("beta", beta)
    base, epsilon = check_number("base", base), check_non_negative("epsilon", epsilon)
    y, x = _inputs(labels, embeddings)
    s = _cosine_similarities(x)
    fixed, pos, neg = tf.stop_gradient(s), positive_mask(y), negative_mask(y)
    hardest_positive = tf.reduce_min(tf.where(pos, fixed, float("inf")), axis=1, keepdims=True)
    hardest_negative = tf.reduce_max(tf.where(neg, fixed, -float("inf")), axis=1, keepdims=True)
    kept_negatives = neg & (fixed > hardest_positive - epsilon)  # none when a has no positive
    kept_positives = pos & (fixed < hardest_negative + epsilon)  # none when a has no negative
    pull = _log_one_plus_sum_exp(-alpha * (s - base), kept_positives) / alpha
    push = _log_one_plus_sum_exp(beta * (s - base), kept_negatives) / beta
    return tf.reduce_mean(pull + push)


def _log_one_plus_sum_exp(z, mask):
    """Per row, log(1 + sum_{k : mask[a, k]} exp(z[a, k])), stable; 0 for a row with no k."""
    return tf.where(tf.reduce_any(mask, axis=1), tf.nn.softplus(_log_sum_exp(z, mask)), 0.0)


# ------------------------------------------------------- names and defaults
FUNCTIONS = {
    "contrastive": contrastive_loss, "triplet": triplet_loss, "npairs": npairs_loss,
    "angular": angular_loss, "supcon": supcon_loss, "nt-xent": nt_xent_loss,
    "multi-similarity": multi_similarity_loss,
}


def defaults(loss):
    """The options of a loss (its name or function) with their defaults, read off its signature.

    >>> defaults("triplet")
    {'margin': 0.2, 'mining': 'semi-hard', 'metric': 'euclidean', 'soft': False}
    """
    return defaults_of(FUNCTIONS[check_choice("loss", loss, tuple(FUNCTIONS))] if isinstance(loss, str) else loss)


# -------------------------------------------------------- Keras loss classes
class _RankingLoss(keras.losses.Loss):
    """Base: ``y_true`` = class ids, ``y_pred`` = embeddings; computed in float32.

    The keyword options are those of ``_function``, with its defaults.
    """

    _function = None

    def __init__(self, name=None, reduction="sum_over_batch_size", **options):
        super().__init__(name=name or type(self).__name__, reduction=reduction, dtype="float32")
        self.options = {**defaults(type(self)._function), **options}
        # Validate now, so a bad option fails at compile() time, not inside fit().
        type(self)._function(tf.constant([0, 0, 1, 1]), tf.zeros([4, 2]), **self.options)

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
    """Keras wrapper of :func:`contrastive_loss`: ``ContrastiveLoss(margin=1.0)``."""

    _function = staticmethod(contrastive_loss)


@keras.saving.register_keras_serializable(package="course_lib")
class TripletLoss(_RankingLoss):
    """Keras wrapper of :func:`triplet_loss`: ``TripletLoss(mining="semi-hard", margin=0.2)``."""

    _function = staticmethod(triplet_loss)


@keras.saving.register_keras_serializable(package="course_lib")
class NPairsLoss(_RankingLoss):
    """Keras wrapper of :func:`npairs_loss`."""

    _function = staticmethod(npairs_loss)


@keras.saving.register_keras_serializable(package="course_lib")
class AngularLoss(_RankingLoss):
    """Keras wrapper of :func:`angular_loss`: ``AngularLoss(alpha_degrees=45.0)``."""

    _function = staticmethod(angular_loss)


@keras.saving.register_keras_serializable(package="course_lib")
class SupConLoss(_RankingLoss):
    """Keras wrapper of :func:`supcon_loss`: ``SupConLoss(temperature=0.1)``."""

    _function = staticmethod(supcon_loss)


@keras.saving.register_keras_serializable(package="course_lib")
class NTXentLoss(_RankingLoss):
    """Keras wrapper of :func:`nt_xent_loss`: ``NTXentLoss(temperature=0.1)``."""

    _function = staticmethod(nt_xent_loss)


@keras.saving.register_keras_serializable(package="course_lib")
class MultiSimilarityLoss(_RankingLoss):
    """Keras wrapper of :func:`multi_similarity_loss`."""

    _function = staticmethod(multi_similarity_loss)
