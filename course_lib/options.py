"""The names of the options and their choices, in one place that imports no TensorFlow.

``python -m course_lib --help`` reads them without starting TensorFlow; the
library checks its arguments against the same tuples. The *defaults* are not
here: each belongs to the function that uses it (``triplet_loss(margin=0.2)``)
and :func:`defaults_of` reads them from its signature.
"""

from __future__ import annotations

import inspect

METRICS = ("euclidean", "squared_euclidean", "cosine")
STRATEGIES = ("all", "hard", "semi-hard", "random")  # triplet mining ("random": no mining, the baseline)
LOSSES = ("contrastive", "triplet", "npairs", "angular", "supcon", "nt-xent", "multi-similarity",
          "cross_entropy")  # cross_entropy: the softmax classifier baseline
DISTRIBUTE = ("default", "mirrored", "multi-worker")  # --strategy: how training spreads over devices
DATASETS = ("mnist", "fashion_mnist")
SPLITS = ("train", "test")
SOURCES = ("auto", "bundled", "full")
PROJECTIONS = ("pca", "umap")


def check_choice(name, value, choices):
    """``value`` when it is one of ``choices``, else a ValueError naming ``name``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {name}={value!r}.")
    return value


def defaults_of(function):
    """The keyword arguments of ``function`` that have a default, with that default."""
    parameters = inspect.signature(function).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
