"""Shared fixtures for the course_lib test-suite."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Make ``import reference`` work from every test module.
sys.path.insert(0, os.path.dirname(__file__))

# deadline=None: the first call of a TF op traces/compiles and takes far
# longer than later ones.  derandomize=True keeps runs reproducible (no
# database, same examples every run) and max_examples stays modest so that
# the whole suite runs in well under a minute and a half on 2 cores.
settings.register_profile(
    "course",
    deadline=None,
    max_examples=20,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "course"))


def make_pk_batch(p=4, k=3, dim=8, seed=0, shuffle=True):
    """A P x K batch: P classes with K samples each, Gaussian embeddings.

    Returns (labels int32 (B,), embeddings float32 (B, dim)).  The labels are
    non-contiguous class ids (7, 10, 13, ...) and shuffled in batch order, so
    nothing can rely on labels being 0..P-1 or grouped.
    """
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(p) * 3 + 7, k).astype(np.int32)
    if shuffle:
        labels = rng.permutation(labels)
    x = rng.normal(size=(p * k, dim)).astype(np.float32)
    return labels, x


def make_random_batch(b=12, n_classes=4, dim=8, seed=0):
    """Unbalanced random labels (some classes may be singletons or absent)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=b).astype(np.int32)
    x = rng.normal(size=(b, dim)).astype(np.float32)
    return labels, x


def make_clustered_batch(p=4, k=8, dim=6, spread=0.5, seed=0):
    """Clustered data (class centres + noise), for training runs."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(p, dim)) * 2.0
    labels = np.repeat(np.arange(p), k).astype(np.int32)
    x = centres[labels] + spread * rng.normal(size=(p * k, dim))
    perm = rng.permutation(p * k)
    return labels[perm], x[perm].astype(np.float32)


# (P, K, dim, seed) and (B, n_classes, dim, seed) grids used by the
# reference comparisons: small P x K batches, an odd K, and unbalanced labels.
PK_CASES = [(2, 2, 4, 0), (4, 3, 8, 1), (3, 5, 5, 2), (6, 4, 16, 3)]
RANDOM_CASES = [(10, 3, 6, 10), (15, 5, 4, 11), (9, 2, 3, 12)]


def all_batches():
    """Every batch of the reference grids, as pytest params with ids."""
    params = []
    for p, k, dim, seed in PK_CASES:
        params.append(pytest.param(*make_pk_batch(p, k, dim, seed), id=f"pk{p}x{k}-d{dim}-s{seed}"))
    for b, c, dim, seed in RANDOM_CASES:
        params.append(pytest.param(*make_random_batch(b, c, dim, seed), id=f"rand{b}-c{c}-d{dim}-s{seed}"))
    return params


@pytest.fixture
def pk_batch():
    """Factory fixture: ``pk_batch(p, k, dim, seed)`` -> (labels, embeddings)."""
    return make_pk_batch


@pytest.fixture
def random_batch():
    """Factory fixture: ``random_batch(b, n_classes, dim, seed)``."""
    return make_random_batch


@pytest.fixture
def clustered_batch():
    return make_clustered_batch


def finite_difference_gradient(f, x, h=1e-6):
    """Central differences of a scalar NumPy function f at x (float64)."""
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        grad[idx] = (f(up) - f(down)) / (2 * h)
    return grad
