"""Training loop for every loss of the course, with the diagnostics that matter.

Per epoch it records what tells a healthy run from a sick one:

* ``loss``: mean training loss over the epoch's batches;
* ``active_fraction``: share of the triplets the loss looks at that still
  violate the margin, D(a, p) - D(a, n) + m > 0 (the loss's own mining for
  triplet losses, semi-hard triplets otherwise);
* ``mean_positive_distance`` / ``mean_negative_distance`` over the batches;
* ``spread``: RMS distance of held-out embeddings to their centroid;
* retrieval metrics on a held-out set; wall-clock seconds.

A collapsed embedding (every point at the same place, f(x) = const) shows as
distances near 0 with the loss stuck at the margin: :func:`detect_collapse`
recognises it and :func:`train` warns.

The loop runs under any ``tf.distribute`` strategy: build the model inside
``strategy.scope()`` and pass the strategy in. With several replicas each
replica mines and computes the loss on the global batch, not its own slice
(``cross_replica=True``, the default; :mod:`course_lib.distributed` explains
the trap, and how to set up several machines).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field

import keras
import numpy as np
import tensorflow as tf

from course_lib import distributed
from course_lib import losses as losses_module
from course_lib.losses import masked_mean
from course_lib import retrieval
from course_lib.data import pk_batch_plan, to_float
from course_lib.distances import pairwise_distances
from course_lib.mining import mine_triplets_from_distances, negative_mask, positive_mask

LOSSES = {
    "contrastive": losses_module.contrastive_loss,
    "triplet": losses_module.triplet_loss,
    "npairs": losses_module.npairs_loss,
    "angular": losses_module.angular_loss,
    "cross_entropy": None,  # softmax baseline on a classifier_network
}


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    active_fraction: float
    mean_positive_distance: float
    mean_negative_distance: float
    spread: float
    metrics: dict
    seconds: float


@dataclass
class History:
    """What :func:`train` returns: one :class:`EpochRecord` per epoch and optional snapshots."""

    loss_name: str
    options: dict
    records: list = field(default_factory=list)
    snapshots: list = field(default_factory=list)  # [N, d] arrays: before training, then per epoch
    snapshot_labels: np.ndarray | None = None
    snapshot_indices: np.ndarray | None = None  # rows of eval_images the snapshots embed
    final_metrics: dict = field(default_factory=dict)
    collapse: str | None = None

    def __getitem__(self, key):
        """``history["loss"]`` -> the per-epoch list of that field (or retrieval metric)."""
        if key in EpochRecord.__dataclass_fields__:
            return [getattr(r, key) for r in self.records]
        return [r.metrics[key] for r in self.records]

    def to_dict(self):
        return {
            "loss_name": self.loss_name,
            "options": self.options,
            "records": [asdict(r) for r in self.records],
            "final_metrics": self.final_metrics,
            "collapse": self.collapse,
        }


# ----------------------------------------------------------------- pieces
def make_loss(name, **options):
    """``make_loss("triplet", mining="hard")`` -> f(labels, embeddings) -> scalar."""
    if name not in LOSSES:
        raise ValueError(f"Unknown loss={name!r}: expected one of {', '.join(map(repr, LOSSES))}.")
    if name == "cross_entropy":
        if options:
            raise ValueError(f"loss='cross_entropy' takes no options, got {sorted(options)}.")
        return lambda labels, logits: tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        )
    function = LOSSES[name]
    function(tf.constant([0, 0, 1, 1]), tf.zeros([4, 2]), **options)  # fail now on a bad option
    return lambda labels, embeddings: function(labels, embeddings, **options)


def batch_statistics(labels, embeddings, margin=1.0, mining="semi-hard", metric="euclidean"):
    """Mean positive / negative distance and the share of active triplets in one batch."""
    d = tf.stop_gradient(pairwise_distances(embeddings, metric))
    pos, neg = positive_mask(labels), negative_mask(labels)
    mean_pos = masked_mean(d, pos)
    mean_neg = masked_mean(d, neg)
    a, p, n = mine_triplets_from_distances(labels, d, mining)
    gap = tf.gather_nd(d, tf.stack([a, p], 1)) - tf.gather_nd(d, tf.stack([a, n], 1))
    active = tf.math.divide_no_nan(
        tf.reduce_sum(tf.cast(gap + margin > 0, tf.float32)), tf.cast(tf.size(gap), tf.float32)
    )
    return mean_pos, mean_neg, active


def embed(model, images, batch_size=1000):
    """Embeddings of uint8 images [N, 28, 28] (or float inputs) as a NumPy array."""
    outputs = [
        np.asarray(model(to_float(images[i : i + batch_size]) if images.dtype == np.uint8 else images[i : i + batch_size], training=False))
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs).astype(np.float32)


def spread(embeddings):
    """RMS distance to the centroid: ~0 for a collapsed embedding."""
    centred = embeddings - embeddings.mean(axis=0, keepdims=True)
    return float(np.sqrt(np.mean(np.sum(centred**2, axis=1))))


def detect_collapse(record, initial_spread, stuck_at=None):
    """Why this epoch looks collapsed, or ``None``.

    Collapse = the embedding shrank to (nearly) one point: the spread fell
    below 5% of its value before training, or negatives sit no farther than
    positives while the loss is stuck at ``stuck_at`` (the triplet loss's
    value at gap 0: the margin m, or ln 2 with the soft margin).
    """
    if initial_spread > 0 and record.spread < 0.05 * initial_spread:
        return (
            f"embedding collapsed: spread {record.spread:.2g} is under 5% of its initial "
            f"{initial_spread:.2g} (all points close together)"
        )
    gap = record.mean_negative_distance - record.mean_positive_distance
    if stuck_at is not None and abs(record.loss - stuck_at) < 0.02 * stuck_at and abs(gap) < 0.05 * stuck_at:
        return (
            f"embedding collapsed: loss {record.loss:.3g} is stuck at {stuck_at:.3g} and "
            f"negatives are no farther than positives (gap {gap:.2g})"
        )
    return None


# ------------------------------------------------------------------- train
def train(
    model,
    train_images,
    train_labels,
    *,
    loss="triplet",
    loss_options=None,
    eval_images=None,
    eval_labels=None,
    epochs=5,
    classes_per_batch=8,
    samples_per_class=8,
    steps_per_epoch=None,
    learning_rate=1e-3,
    seed=0,
    eval_size=2000,
    snapshot_size=0,
    strategy=None,
    cross_replica=True,
    progress=True,
):
    """Train ``model`` with one of :data:`LOSSES` on P x K batches; return a :class:`History`.

    ``loss_options`` go to the loss (``{"mining": "hard", "margin": 0.2}``).
    ``eval_images``/``eval_labels`` (held out) give retrieval metrics: on a
    fixed subset of ``eval_size`` after each epoch and on all of them at the
    end. ``snapshot_size`` > 0 keeps that many held-out embeddings per epoch
    for an animation. ``strategy``: a ``tf.distribute`` strategy whose scope
    built ``model``. ``cross_replica=True`` (the default) gathers all replicas' embeddings
    and labels, so that mining, the loss and the batch statistics use the
    global P x K batch, as on one device (recommended with several replicas;
    no effect with one). With ``False`` each replica mines its own slice of
    P/R classes and the replicas' losses are averaged.
    """
    options = dict(loss_options or {})
    loss_fn = make_loss(loss, **options)
    strategy = strategy or tf.distribute.get_strategy()
    # A collapsed triplet loss sits at the value of the hinge at gap 0.
    stuck_at = None
    if loss == "triplet":
        stuck_at = math.log(2.0) if options.get("soft") else options.get("margin", 1.0)
    stats_margin = options.get("margin", 1.0)
    stats_mining = options.get("mining", "semi-hard") if loss == "triplet" else "semi-hard"
    stats_metric = options.get("metric", "euclidean")
    embedder = model.get_layer("backbone") if loss == "cross_entropy" else model

    with strategy.scope():
        optimizer = keras.optimizers.Adam(learning_rate)
        optimizer.build(model.trainable_variables)

    def forward(images):
        """(outputs the loss sees, features the statistics see): one pass for either model."""
        if loss == "cross_entropy":  # backbone features, then the softmax head
            features = embedder(images, training=True)
            return model.get_layer("logits")(features), features
        outputs = model(images, training=True)
        return outputs, outputs

    def step(images, labels):
        with tf.GradientTape() as tape:
            outputs, features = forward(images)
            # value / num_replicas, also with cross_replica: see course_lib.distributed.
            value, scaled = distributed.replica_loss(loss_fn, labels, outputs, cross_replica)
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        features = tf.stop_gradient(features)
        if cross_replica:
            labels, features = distributed.gather_batch(labels, features)
        return (value, *batch_statistics(labels, features, stats_margin, stats_mining, stats_metric))

    @tf.function
    def distributed_step(images, labels):
        results = strategy.run(step, args=(images, labels))
        return [strategy.reduce("MEAN", r, axis=None) for r in results]

    # One epoch = one pass of the P x K plan over the training set.
    per_epoch = steps_per_epoch or len(pk_batch_plan(train_labels, classes_per_batch, samples_per_class, seed=seed))
    # Each replica gets its slice of every P x K batch: P/R whole classes.
    batches = iter(distributed.distribute_pk_batches(
        strategy, train_images, train_labels, classes_per_batch, samples_per_class,
        seed=seed, num_batches=per_epoch * epochs,
    ))

    rng = np.random.default_rng(seed)
    history = History(loss_name=loss, options=options)
    eval_subset = snapshot = None
    if eval_images is not None:
        eval_subset = _subset(len(eval_images), eval_size, rng)
        if snapshot_size:
            snapshot = _subset(len(eval_images), snapshot_size, rng)
            history.snapshot_indices = snapshot
            history.snapshot_labels = np.asarray(eval_labels)[snapshot]
            history.snapshots.append(embed(embedder, eval_images[snapshot]))
    initial_spread = spread(embed(embedder, eval_images[eval_subset])) if eval_subset is not None else 0.0

    bar = _progress(epochs * per_epoch, progress, loss)
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        sums = np.zeros(4)
        for _ in range(per_epoch):
            images, labels = next(batches)
            sums += np.array([float(v) for v in distributed_step(images, labels)])
            if bar is not None:
                bar.update(1)
        seconds = time.perf_counter() - start
        means = sums / per_epoch
        metrics, epoch_spread = {}, float("nan")
        if eval_subset is not None:
            vectors = embed(embedder, eval_images[eval_subset])
            epoch_spread = spread(vectors)
            metrics = retrieval.evaluate(vectors, np.asarray(eval_labels)[eval_subset])
            if snapshot is not None:
                history.snapshots.append(embed(embedder, eval_images[snapshot]))
        record = EpochRecord(epoch, means[0], means[3], means[1], means[2], epoch_spread, metrics, seconds)
        history.records.append(record)
        if bar is not None:
            bar.set_postfix(loss=f"{record.loss:.3f}", active=f"{record.active_fraction:.2f}",
                            p_at_1=f"{metrics.get('precision_at_1', float('nan')):.3f}")
        reason = detect_collapse(record, initial_spread, stuck_at) if eval_subset is not None else None
        if reason and history.collapse is None:
            history.collapse = f"epoch {epoch}: {reason}"
            warnings.warn(
                f"{history.collapse}. Try semi-hard instead of hard mining or a lower learning "
                "rate; with hard mining, smaller batches also help (a smaller margin does not: "
                "every batch-hard triplet is active until the embedding separates).",
                RuntimeWarning,
                stacklevel=2,
            )
    if bar is not None:
        bar.close()
    if eval_images is not None:
        history.final_metrics = retrieval.evaluate(embed(embedder, eval_images), np.asarray(eval_labels))
    return history


def _subset(n, size, rng):
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=size, replace=False))


def _progress(total, enabled, description):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"train {description}", unit="step", leave=True)


def epoch_seconds(history):
    """Mean training seconds per epoch, leaving out the first (tracing) epoch when possible."""
    seconds = history["seconds"]
    return float(np.mean(seconds[1:] if len(seconds) > 1 else seconds)) if seconds else math.nan
