"""Input checks at the public edge: tensors (distances, miners, losses) and NumPy arrays
(retrieval, projection). Private helpers trust what these return.

Bad input must fail early with a message that names the argument and what
was expected, never with a bare shape error deep in a matmul. TensorFlow is
imported inside the tensor checks only, so the NumPy modules load without it.
"""

from __future__ import annotations

import numbers

import numpy as np


def check_number(name, value):
    """``value`` as a float; a TypeError naming ``name`` when it is not a number."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}.")
    return float(value)


def check_positive(name, value):
    if not check_number(name, value) > 0:
        raise ValueError(f"`{name}` must be > 0, got {value}.")
    return float(value)


def check_non_negative(name, value):
    if not check_number(name, value) >= 0:
        raise ValueError(f"`{name}` must be >= 0, got {value}.")
    return float(value)


def is_int(value):
    """True for an integer (Python or NumPy), False for bool, float and the rest."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def as_embeddings(embeddings, name="embeddings"):
    """A rank-2 float32 tensor [B, D]; lower or higher precision is cast to float32."""
    import tensorflow as tf

    x = tf.convert_to_tensor(embeddings)
    if x.dtype == tf.string or x.dtype == tf.bool:
        raise TypeError(f"`{name}` must be numeric, got dtype {x.dtype.name}.")
    if x.shape.rank is not None and x.shape.rank != 2:
        raise ValueError(f"`{name}` must be rank 2 [batch, dim], got shape {x.shape}.")
    return tf.cast(x, tf.float32)


def as_labels(labels, embeddings):
    """Class ids as a 1-D tensor [B], accepting (B,) or Keras' (B, 1).

    Masks built from a (B, 1) tensor without this reshape silently compare
    every label with itself only (omoindrot/tensorflow-triplet-loss#18).
    """
    import tensorflow as tf

    y = tf.convert_to_tensor(labels)
    if not (y.dtype.is_integer or y.dtype.is_floating or y.dtype == tf.bool):
        raise TypeError(f"`labels` must hold int or float class ids, got dtype {y.dtype.name}.")
    rank = y.shape.rank
    if rank is not None and (rank not in (1, 2) or (rank == 2 and y.shape[1] not in (1, None))):
        raise ValueError(f"`labels` must be shaped (B,) or (B, 1), got shape {y.shape}.")
    y = tf.reshape(y, [-1])
    if y.dtype == tf.bool:
        y = tf.cast(y, tf.int32)
    n_labels, n_embeddings = y.shape[0], embeddings.shape[0]
    if n_labels is not None and n_embeddings is not None:
        if n_labels != n_embeddings:
            raise ValueError(
                f"`labels` and `embeddings` must have the same batch size: "
                f"got {n_labels} labels for {n_embeddings} embeddings.")
        return y
    with tf.control_dependencies([tf.debugging.assert_equal(
            tf.shape(y)[0], tf.shape(embeddings)[0],
            message="`labels` and `embeddings` must have the same batch size")]):
        return tf.identity(y)


def as_points(x, name="embeddings"):
    """A non-empty, finite float32 NumPy array [N, D] (NumPy twin of :func:`as_embeddings`)."""
    try:
        x = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`{name}` must be a numeric [N, D] array: {error}") from None
    if x.ndim != 2:
        raise ValueError(f"`{name}` must be rank 2 [N, D], got shape {x.shape}.")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"`{name}` must be non-empty, got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return x


def as_label_array(labels, n, name="labels", embeddings_name="embeddings"):
    """Labels as a 1-D NumPy array of length ``n``; Keras' (N, 1) is accepted (twin of :func:`as_labels`)."""
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"`{name}` must be shaped (N,) or (N, 1), got shape {y.shape}.")
    if len(y) != n:
        raise ValueError(f"`{name}` and `{embeddings_name}` must have the same length: "
                         f"got {len(y)} labels for {n} embeddings.")
    return y
