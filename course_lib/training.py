"""Training loop for every loss of the course, with the diagnostics that matter.

Per epoch it records what tells a healthy run from a sick one:

* ``loss``: mean training loss over the epoch's batches;
* ``active_fraction``: share of the loss's own mined triplets that still
  violate the margin, D(a, p) - D(a, n) + m > 0 (D(a, p) > D(a, n) with the
  soft margin); NaN for the losses that mine no triplets;
* ``mean_positive_distance`` / ``mean_negative_distance`` over the batches'
  positive / negative pairs (for the triplet loss, from the very distances
  its mining used: one mining pass per batch);
* ``spread``: RMS distance of held-out embeddings to their centroid;
* retrieval metrics on a held-out set; wall-clock seconds.

A collapsed embedding (every point at the same place, f(x) = const) shows as
distances near 0 with the loss stuck at the margin: :func:`detect_collapse`
recognises it and :func:`train` warns.

:func:`train` draws P x K batches of labelled images;
:func:`train_self_supervised` runs the same loop without class labels, on
two augmented views per image labelled by the image's index (SimCLR,
lesson 10). Both call ``on_epoch(record)`` after every epoch if asked.

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

from course_lib import augment, distributed, losses, retrieval
from course_lib.data import pick_subset, pk_batch_plan, to_float
from course_lib.distances import pairwise_distances
from course_lib.losses import masked_mean
from course_lib.mining import negative_mask, positive_mask
from course_lib.models import embedding_model
from course_lib.options import LOSSES as LOSS_NAMES
from course_lib.options import check_choice, defaults_of

#: Every loss :func:`train` knows, by name; "cross_entropy" is the softmax
#: baseline on a :func:`course_lib.models.classifier_network`.
LOSSES = {name: losses.FUNCTIONS.get(name) for name in LOSS_NAMES}


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
        """Plain JSON values (NaN as None): what ``python -m course_lib train`` saves."""
        return _json_values({
            "loss_name": self.loss_name, "options": self.options, "records": [asdict(r) for r in self.records],
            "final_metrics": self.final_metrics, "collapse": self.collapse,
        })


def _json_values(value):
    if isinstance(value, dict):
        return {str(k): _json_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_values(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value.item() if isinstance(value, np.generic) else value


# ----------------------------------------------------------------- losses
def make_loss(name, **options):
    """``make_loss("triplet", mining="hard")`` -> f(labels, embeddings) -> scalar."""
    check_choice("loss", name, tuple(LOSSES))
    if name == "cross_entropy":
        if options:
            raise ValueError(f"loss='cross_entropy' takes no options, got {sorted(options)}.")
        return lambda labels, logits: tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    function = LOSSES[name]
    function(tf.constant([0, 0, 1, 1]), tf.zeros([4, 2]), **options)  # fail now on a bad option
    return lambda labels, embeddings: function(labels, embeddings, **options)


def make_objective(name, **options):
    """f(labels, outputs) -> (loss, (active_fraction, mean D(a, p), mean D(a, n))), what a step reports.

    The triplet loss reports the statistics of its own mining pass
    (:func:`course_lib.losses.triplet_loss_and_statistics`). The other losses
    mine no triplets (active fraction NaN); their mean distances are measured
    on the embeddings, for cross-entropy on the backbone's features: then
    ``outputs`` is (logits, features), see :func:`_with_features`.
    """
    if name == "triplet":
        losses.triplet_loss(tf.constant([0, 0, 1, 1]), tf.zeros([4, 2]), **options)  # fail now

        def triplet_objective(labels, embeddings):
            loss, *statistics = losses.triplet_loss_and_statistics(labels, embeddings, **options)
            return loss, tuple(statistics)

        return triplet_objective
    loss_fn, metric = make_loss(name, **options), options.get("metric", "euclidean")

    def objective(labels, outputs):
        logits, features = outputs if name == "cross_entropy" else (outputs, outputs)
        d = tf.stop_gradient(pairwise_distances(features, metric))
        labels = tf.reshape(labels, [-1])
        return loss_fn(labels, logits), (tf.constant(math.nan), masked_mean(d, positive_mask(labels)),
                                         masked_mean(d, negative_mask(labels)))

    return objective


def _with_features(classifier):
    """The classifier with a second output, its backbone's features (the statistics use them)."""
    inputs = keras.Input(classifier.input_shape[1:])
    features = classifier.get_layer("backbone")(inputs)
    return keras.Model(inputs, [classifier.get_layer("logits")(features), features])


def _stuck_at(loss, options):
    """The loss a collapsed embedding gets stuck at: the triplet hinge at gap 0 (m, or ln 2 when soft)."""
    if loss != "triplet":
        return None
    return math.log(2.0) if options["soft"] else options["margin"]


# ------------------------------------------------------------ diagnostics
def embed(model, images, batch_size=1000):
    """Embeddings of uint8 images [N, 28, 28] (or float inputs) as a NumPy array."""
    def as_input(chunk):
        return to_float(chunk) if chunk.dtype == np.uint8 else chunk

    outputs = [np.asarray(model(as_input(images[i : i + batch_size]), training=False))
               for i in range(0, len(images), batch_size)]
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


class _Monitor:
    """The held-out side of training: retrieval metrics, spread, snapshots and the collapse check."""

    def __init__(self, embedder, images, labels, eval_size, snapshot_size, seed, history):
        self.embedder, self.images, self.history = embedder, images, history
        self.enabled = images is not None
        if not self.enabled:
            return
        rng = np.random.default_rng(seed)
        self.labels = np.asarray(labels)
        self.subset = pick_subset(len(images), eval_size, rng)
        self.snapshot = pick_subset(len(images), snapshot_size, rng) if snapshot_size else None
        if self.snapshot is not None:
            history.snapshot_indices, history.snapshot_labels = self.snapshot, self.labels[self.snapshot]
            history.snapshots.append(embed(embedder, images[self.snapshot]))
        self.initial_spread = spread(embed(embedder, images[self.subset]))

    def after_epoch(self):
        """(spread, retrieval metrics) of the held-out subset now; NaN and {} without one."""
        if not self.enabled:
            return math.nan, {}
        if self.snapshot is not None:
            self.history.snapshots.append(embed(self.embedder, self.images[self.snapshot]))
        vectors = embed(self.embedder, self.images[self.subset])
        return spread(vectors), retrieval.evaluate(vectors, self.labels[self.subset])

    def check_collapse(self, record, stuck_at):
        reason = detect_collapse(record, self.initial_spread, stuck_at) if self.enabled else None
        if reason and self.history.collapse is None:
            self.history.collapse = f"epoch {record.epoch}: {reason}"
            warnings.warn(
                f"{self.history.collapse}. Try semi-hard instead of hard mining or a lower learning "
                "rate; with hard mining, smaller batches also help (a smaller margin does not: "
                "every batch-hard triplet is active until the embedding separates).",
                RuntimeWarning, stacklevel=4)  # the caller of train()

    def final_metrics(self):
        return retrieval.evaluate(embed(self.embedder, self.images), self.labels) if self.enabled else {}


# ------------------------------------------------------------------- train
def train(model, train_images, train_labels, *, loss="triplet", loss_options=None, eval_images=None,
          eval_labels=None, epochs=5, classes_per_batch=8, samples_per_class=8, steps_per_epoch=None,
          learning_rate=1e-3, seed=0, eval_size=2000, snapshot_size=0, strategy=None, cross_replica=True,
          progress=True, on_epoch=None):
    """Train ``model`` with one of :data:`LOSSES` on P x K batches; return a :class:`History`.

    ``loss_options`` go to the loss (``{"mining": "hard", "margin": 0.2}``; the
    others keep the loss's defaults). ``eval_images``/``eval_labels`` (held
    out) give retrieval metrics: on a fixed subset of ``eval_size`` after each
    epoch and on all of them at the end. ``snapshot_size`` > 0 keeps that many
    held-out embeddings per epoch for an animation. ``strategy``: a
    ``tf.distribute`` strategy whose scope built ``model``. ``cross_replica=True``
    (the default) gathers all replicas' embeddings and labels, so that mining,
    the loss and the batch statistics use the global P x K batch, as on one
    device; with ``False`` each replica mines its own slice of P/R classes.
    ``progress`` shows a tqdm bar; ``on_epoch(record)``, if given, is called
    with each :class:`EpochRecord` as soon as its epoch ends (the command line
    prints its table from it, with ``progress=False``).
    """
    options = {**(losses.defaults(loss) if LOSSES.get(loss) else {}), **(loss_options or {})}
    objective = make_objective(loss, **options)
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        optimizer = keras.optimizers.Adam(learning_rate)
    stepped = _with_features(model) if loss == "cross_entropy" else model
    step = distributed.make_train_step(strategy, stepped, objective, optimizer, cross_replica)
    per_epoch = steps_per_epoch or len(pk_batch_plan(train_labels, classes_per_batch, samples_per_class, seed=seed))
    batches = iter(distributed.distribute_pk_batches(  # each replica: P/R whole classes of every batch
        strategy, train_images, train_labels, classes_per_batch, samples_per_class, seed=seed,
        num_batches=per_epoch * epochs))
    history = History(loss_name=loss, options=options)
    monitor = _Monitor(embedding_model(model), eval_images, eval_labels, eval_size, snapshot_size, seed, history)
    return _run_epochs(step, batches, epochs, per_epoch, history, monitor, _stuck_at(loss, options),
                       progress, on_epoch)


def _run_epochs(step, batches, epochs, per_epoch, history, monitor, stuck_at, progress, on_epoch):
    """The epoch loop of :func:`train` and :func:`train_self_supervised`: fills and returns ``history``."""
    bar = _progress_bar(epochs * per_epoch, progress, history.loss_name)
    for epoch in range(1, epochs + 1):
        start, sums = time.perf_counter(), np.zeros(4)
        for _ in range(per_epoch):
            sums += [float(v) for v in step(*next(batches))]
            bar.update(1)
        seconds = time.perf_counter() - start
        record = EpochRecord(epoch, *(sums / per_epoch), *monitor.after_epoch(), seconds)
        history.records.append(record)
        bar.set_postfix(loss=f"{record.loss:.3f}", active=f"{record.active_fraction:.2f}",
                        p_at_1=f"{record.metrics.get('precision_at_1', math.nan):.3f}")
        monitor.check_collapse(record, stuck_at)
        if on_epoch is not None:
            on_epoch(record)
    bar.close()
    history.final_metrics = monitor.final_metrics()
    return history


def _progress_bar(total, enabled, description):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"train {description}", unit="step", leave=True, disable=not enabled)


# ---------------------------------------------------- train without labels
#: Every loss but cross-entropy can take an image's index as its label (two samples per label).
SELF_SUPERVISED_LOSSES = tuple(name for name in LOSSES if name != "cross_entropy")


def self_supervised_defaults(loss, temperature=None):
    """The options :func:`train_self_supervised` gives ``loss`` unless told otherwise.

    The loss's own defaults, but its temperature (if it has one) ``temperature``,
    by default :func:`train_self_supervised`'s.
    """
    check_choice("loss", loss, SELF_SUPERVISED_LOSSES)
    if temperature is None:
        temperature = defaults_of(train_self_supervised)["temperature"]
    options = losses.defaults(loss)
    if "temperature" in options:
        options["temperature"] = temperature
    return options


def train_self_supervised(model, images, *, loss="nt-xent", temperature=0.5, loss_options=None, eval_images=None,
                          eval_labels=None, epochs=5, batch_size=256, strength=0.7, steps_per_epoch=None,
                          learning_rate=1e-3, seed=0, eval_size=2000, class_labels=None, progress=True,
                          on_epoch=None):
    """Train ``model`` on two augmented views per image, without labels (SimCLR); return a :class:`History`.

    Each batch takes ``batch_size`` distinct images and two views of each
    (:func:`course_lib.augment.view_pairs` at augmentation ``strength``):
    2b rows, and both views of image i get label i, its index. So every view
    has exactly one positive, its twin, and 2b - 2 negatives; with NT-Xent
    this is SimCLR's loss. No class label enters training: ``eval_images`` /
    ``eval_labels`` only score retrieval, as in :func:`train`.
    ``temperature`` t of the losses that have one (NT-Xent, SupCon; the others
    ignore it): 0.5, not their own 0.1. t = 0.1 suits labelled batches; on two
    views per image it fell below raw pixels on MNIST, while t = 0.5 (SimCLR's
    CIFAR-10 value) reached about twice their MAP@R (lesson 10).
    ``loss_options`` override :func:`self_supervised_defaults`. An epoch is
    one pass, len(images) // batch_size steps, unless ``steps_per_epoch``.
    ``class_labels`` (one class id per image), when given, label each view by
    its image's class instead: SupCon's supervised variant, no longer label-free.
    One device (no ``strategy``). ``progress``, ``on_epoch``: as in :func:`train`.
    """
    options = {**self_supervised_defaults(loss, temperature), **(loss_options or {})}
    objective = make_objective(loss, **options)
    optimizer = keras.optimizers.Adam(learning_rate)
    step = distributed.make_train_step(tf.distribute.get_strategy(), model, objective, optimizer)
    views = augment.view_pairs(images, batch_size, seed=seed, strength=strength)
    if class_labels is not None:
        classes = np.asarray(class_labels).reshape(-1)
        if len(classes) != len(images):
            raise ValueError(f"`class_labels` needs one label per image ({len(images)}), got {len(classes)}.")
        classes = tf.constant(classes)
        views = views.map(lambda x, ids: (x, tf.gather(classes, ids)))
    history = History(loss_name=loss, options=options)
    monitor = _Monitor(embedding_model(model), eval_images, eval_labels, eval_size, 0, seed, history)
    return _run_epochs(step, iter(views), epochs, steps_per_epoch or len(images) // batch_size, history,
                       monitor, _stuck_at(loss, options), progress, on_epoch)



def epoch_seconds(history):
    """Mean training seconds per epoch, leaving out the first (tracing) epoch when possible."""
    seconds = history["seconds"]
    return float(np.mean(seconds[1:] if len(seconds) > 1 else seconds)) if seconds else math.nan
