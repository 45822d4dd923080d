"""Retrieval of classes never seen in training: the held-out-class protocol.

An embedding is worth training when it retrieves *new* classes, ones the
network never saw (TF Similarity's hello-world; lesson 06). The protocol:

1. Pick the held-out ("unseen") classes U. Training uses only the training
   images whose class is not in U (:func:`seen_only`). Anything tuned
   during training (early stopping) is tuned on training classes too,
   never on the test split.
2. Cut the test split into queries and a gallery (:func:`query_gallery_split`):
   within each class, items 0, 2, 4, ... are queries, items 1, 3, 5, ...
   gallery items. The gallery holds *every* class, seen and unseen, the way
   a shop's search index holds every product.
3. Score the queries of seen classes and those of unseen classes separately
   against that one gallery (:func:`seen_unseen_metrics`), each with
   :func:`course_lib.retrieval.evaluate`: precision@1, recall@k,
   R-precision and MAP@R, where for a query with R same-class gallery items

       MAP@R = (1/R) * sum over i = 1..R of  P(i) * [item i is relevant],

   P(i) the precision of the first i results.
4. Compare with the raw pixels scored the same way (:func:`pixel_embeddings`):
   an embedding is useful on unseen classes only if it beats them.

The recipe (what ``train --holdout-classes`` does by default): the course's
triplet loss (semi-hard, margin 0.2, on the 64-d L2-normalised projection),
:data:`EPOCHS` epochs, and for retrieval not the projection but the
flattened conv features below the dense layers (:func:`holdout_embeddings`),
compared with the cosine distance d(x, y) = 1 - x.y / (|x| |y|). Why: the
loss rewards exactly one thing, that *training* classes separate by the
margin. The projection head is the layer most free to do only that, and it
drops whatever does not separate the training classes, including what
tells the new classes apart (on MNIST with 6-9 held out it falls below the
pixels); the conv features keep a map of which strokes are where, shaped by
the loss but not reduced to it. The cosine distance ignores how strongly
the filters fire overall (ink, contrast) and compares only the pattern.

:func:`holdout_report` does 2 to 4 in one call; :func:`network_report` adds
the two rows that say *why* the recipe is what it is, scored on the same
queries and gallery: the dict that ``python -m course_lib train
--holdout-classes ...`` saves in metrics.json (:func:`holdout_section`):

    {"classes": [6, 7, 8, 9], "seen": {...}, "unseen": {...},
     "pixels": {"seen": {...}, "unseen": {...}},
     "projection": {"seen": {...}, "unseen": {...}},   # the network's own output: the failure
     "untrained": {"seen": {...}, "unseen": {...}}}    # same features, weights before training

"untrained" is what training adds: the same architecture and seed before a
single step already beats the pixels on some splits (a random conv layer
is a bank of edge detectors), so the recipe's gain is recipe - untrained,
not recipe - pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from course_lib import retrieval
from course_lib._checks import is_int

__all__ = [
    "EPOCHS", "check_holdout_classes", "seen_only", "pixel_embeddings", "query_gallery_split",
    "seen_unseen_metrics", "holdout_report", "holdout_embeddings", "network_report", "build_model",
    "holdout_section", "holdout_table", "recompute_holdout",
]

#: Training epochs of the recipe (``train --holdout-classes`` without ``--epochs``).
EPOCHS = 3


# ------------------------------------------------------------ the split
def check_holdout_classes(holdout_classes, num_classes=10):
    """The held-out classes as a sorted list of ints; ValueError when they are not usable.

    Each must be a class id in 0..num_classes - 1, none twice, and at least
    two classes must stay for training (a P x K batch needs two classes).
    """
    try:
        classes = list(holdout_classes)
    except TypeError:
        raise ValueError(f"holdout_classes must be a list of class ids, got {holdout_classes!r}.") from None
    if not classes:
        raise ValueError("holdout_classes must name at least one class, got none.")
    for c in classes:
        if not is_int(c) or not 0 <= c < num_classes:
            raise ValueError(f"holdout_classes: {c!r} is not a class id; expected ints in 0..{num_classes - 1}.")
    if len(set(classes)) != len(classes):
        raise ValueError(f"holdout_classes names a class twice: {classes}.")
    if num_classes - len(classes) < 2:
        raise ValueError(f"holdout_classes={sorted(classes)} leaves {num_classes - len(classes)} of "
                         f"{num_classes} classes for training; at least 2 must stay.")
    return sorted(int(c) for c in classes)


def seen_only(images, labels, holdout_classes):
    """The training images and labels whose class is *not* held out: (images, labels)."""
    labels = np.asarray(labels).reshape(-1)
    keep = ~np.isin(labels, check_holdout_classes(holdout_classes))
    return np.asarray(images)[keep], labels[keep]


def pixel_embeddings(images):
    """The raw-pixel "embedding": uint8 images [N, 28, 28] -> float32 [N, 784] in [0, 1].

    x = vec(image) / 255: the Euclidean distance of two images is the root of
    the summed squared differences of their pixel intensities.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"`images` must be uint8 [N, height, width], got {images.dtype} {images.shape}.")
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def query_gallery_split(labels):
    """Boolean mask [N]: True for queries, False for the gallery; half of each class each.

    Within each class, in the order of the array, items 0, 2, 4, ... are
    queries and items 1, 3, 5, ... gallery items. Deterministic, and every
    class is split evenly (an odd count gives the queries one more).
    """
    labels = np.asarray(labels).reshape(-1)
    is_query = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        is_query[np.flatnonzero(labels == label)[0::2]] = True
    return is_query


# -------------------------------------------------------------- scoring
def seen_unseen_metrics(embeddings, labels, unseen, is_query=None, ks=(1, 5, 10), metric="euclidean"):
    """Seen-class and unseen-class queries, each against one gallery of every class.

    Returns ``{"seen": evaluate(...), "unseen": evaluate(...)}``: the queries
    (``is_query``, default :func:`query_gallery_split`) whose class is / is
    not in ``unseen``, searched in the gallery ``~is_query``.
    """
    labels = np.asarray(labels).reshape(-1)
    embeddings = np.asarray(embeddings)
    is_query = query_gallery_split(labels) if is_query is None else np.asarray(is_query, dtype=bool)
    is_unseen = np.isin(labels, np.asarray(list(unseen)))
    gallery = ~is_query
    result = {}
    for group, mask in (("seen", is_query & ~is_unseen), ("unseen", is_query & is_unseen)):
        if not mask.any():
            raise ValueError(f"No {group}-class query: the labels hold no {group} class.")
        result[group] = retrieval.evaluate(embeddings[mask], labels[mask], embeddings[gallery],
                                           labels[gallery], ks=ks, metric=metric)
    return result


def holdout_report(embeddings, images, labels, holdout_classes, metric="cosine", ks=(1, 5, 10)):
    """The held-out-class report of an embedding of the test split, beside raw pixels.

    ``embeddings`` [N, D] and uint8 ``images`` [N, 28, 28] of the same N test
    items, ``labels`` [N]. Returns ``{"classes": sorted held-out classes,
    "seen": ..., "unseen": ..., "pixels": {"seen": ..., "unseen": ...}}``, each
    an :func:`course_lib.retrieval.evaluate` dict (:func:`seen_unseen_metrics`,
    the embedding with ``metric``, the pixels with the Euclidean distance).
    """
    classes = check_holdout_classes(holdout_classes)
    embeddings, labels = np.asarray(embeddings), np.asarray(labels).reshape(-1)
    if len(embeddings) != len(labels) or len(images) != len(labels):
        raise ValueError(f"embeddings, images and labels must have one row per item, got "
                         f"{len(embeddings)}, {len(images)} and {len(labels)}.")
    is_query = query_gallery_split(labels)
    learned = seen_unseen_metrics(embeddings, labels, classes, is_query, ks, metric)
    pixels = seen_unseen_metrics(pixel_embeddings(images), labels, classes, is_query, ks)
    return {"classes": classes, **learned, "pixels": pixels}


# ---------------------------------------------------------------- recipe
def holdout_embeddings(model, images, features="conv"):
    """The features of uint8 ``images`` [N, 28, 28] that the held-out report scores: float32 [N, F].

    ``features`` names a layer of ``model`` (:func:`course_lib.models.feature_model`).
    The default, the flattened conv features under the dense layers, is the
    recipe's: the projection head is trained to separate the *training*
    classes and nothing else, so it throws away what tells new classes apart;
    the conv layers below it keep more (lesson 06 measures it).
    """
    from course_lib import models, training

    return training.embed(models.feature_model(model, features), images)


def network_report(model, untrained, images, labels, holdout_classes, features, metric, output_metric):
    """:func:`holdout_report` of a trained network, with its projection and its untrained twin beside it.

    ``model``: the trained network; ``untrained``: the same architecture
    built with the same seed, never trained (or None to leave that row
    out). Scored on the same queries and gallery of uint8 ``images``:

    * the report's "seen"/"unseen": ``model``'s ``features`` with ``metric``
      (the recipe: "conv", "cosine");
    * "pixels": the raw pixels, Euclidean;
    * "projection": what ``model`` outputs (:func:`course_lib.models.embedding_model`)
      with ``output_metric``, the distance the loss trained it for;
    * "untrained": ``untrained``'s ``features`` with ``metric``.
    """
    from course_lib import models, training

    labels = np.asarray(labels).reshape(-1)
    report = holdout_report(holdout_embeddings(model, images, features), images, labels,
                            holdout_classes, metric)
    is_query, classes = query_gallery_split(labels), report["classes"]
    output = training.embed(models.embedding_model(model), images)
    report["projection"] = seen_unseen_metrics(output, labels, classes, is_query, metric=output_metric)
    if untrained is not None:
        report["untrained"] = seen_unseen_metrics(holdout_embeddings(untrained, images, features), labels,
                                                  classes, is_query, metric=metric)
    return report


# ------------------------------------------------------- a command-line run
# ``settings``: the "settings" of a run's metrics.json (course_lib.cli.train_settings).
def build_model(settings):
    """The run's network before training: the same weights for the same settings["seed"].

    The command line trains this network, and :func:`holdout_section` rebuilds
    it untrained from the saved settings: the "untrained" row is its twin.
    """
    from course_lib import models

    if settings["loss"] == "cross_entropy":
        return models.classifier_network(seed=settings["seed"])
    return models.embedding_network(settings["embedding_dim"], settings["l2_normalize"], seed=settings["seed"])


def holdout_section(settings, model, images, labels):
    """metrics.json's "holdout": :func:`network_report` of a run's trained ``model`` on its test items.

    settings["holdout_features"] and settings["holdout_metric"] (the recipe),
    the raw pixels, the model's own output with settings["metric"]
    ("projection"), and :func:`build_model`'s untrained twin ("untrained").
    """
    return network_report(model, build_model(settings), images, labels, settings["holdout_classes"],
                          settings["holdout_features"], settings["holdout_metric"], settings["metric"])


def holdout_table(section):
    """MAP@R and precision@1 of seen and unseen queries, as text: trained, projection, untrained, pixels."""
    lines = [f"\nHeld-out classes {section['classes']} (never trained on): queries of the test split's "
             f"first half against its second half (every class)",
             f"  {'features':<11} {'MAP@R seen':>10} {'unseen':>8} {'P@1 seen':>9} {'unseen':>8}"]
    rows = [("trained", section), *((name, section.get(name)) for name in ("projection", "untrained", "pixels"))]
    for name, scores in rows:
        if scores is None:  # runs saved before that row existed
            continue
        seen, unseen = scores["seen"], scores["unseen"]
        lines.append(f"  {name:<11} {seen['map_at_r']:>10.4f} {unseen['map_at_r']:>8.4f} "
                     f"{seen['precision_at_1']:>9.4f} {unseen['precision_at_1']:>8.4f}")
    lines.append("  (trained: the recipe's features and distance; projection: the network's output; untrained: "
                 "the recipe's features before training, same seed; pixels: raw, euclidean)")
    return "\n".join(lines)


def recompute_holdout(run_dir, settings, images, labels):
    """The "holdout" section of a saved run: its model.keras on its test ``images`` (the untrained
    twin rebuilt from the saved seed)."""
    import keras

    path = Path(run_dir) / "model.keras"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no model.keras: the holdout section scores the "
                                f"model's {settings['holdout_features']!r} features, not embeddings.npy")
    return holdout_section(settings, keras.models.load_model(path), images, labels)
