"""Input checks shared by the distances, miners and losses.

Bad input must fail early with a message that names the argument and what
was expected, never with a bare TensorFlow shape error deep in a matmul.
"""

from __future__ import annotations

import numbers

import tensorflow as tf

from course_lib.options import check_choice  # noqa: F401  (re-exported: the one choice check)


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


def as_embeddings(embeddings, name="embeddings"):
    """A rank-2 float32 tensor [B, D]; lower or higher precision is cast to float32."""
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
    y = tf.convert_to_tensor(labels)
    if not (y.dtype.is_integer or y.dtype.is_floating or y.dtype == tf.bool):
        raise TypeError(f"`labels` must hold int or float class ids, got dtype {y.dtype.name}.")
    rank = y.shape.rank
    if rank is not None:
        if rank == 2 and y.shape[1] not in (1, None):
            raise ValueError(f"`labels` must be shaped (B,) or (B, 1), got shape {y.shape}.")
        if rank not in (1, 2):
            raise ValueError(f"`labels` must be shaped (B,) or (B, 1), got shape {y.shape}.")
    y = tf.reshape(y, [-1])
    if y.dtype == tf.bool:
        y = tf.cast(y, tf.int32)
    n_labels, n_embeddings = y.shape[0], embeddings.shape[0]
    if n_labels is not None and n_embeddings is not None:
        if n_labels != n_embeddings:
            raise ValueError(
                f"`labels` and `embeddings` must have the same batch size: "
                f"got {n_labels} labels for {n_embeddings} embeddings."
            )
    else:
        with tf.control_dependencies([
            tf.debugging.assert_equal(
                tf.shape(y)[0], tf.shape(embeddings)[0],
                message="`labels` and `embeddings` must have the same batch size",
            )
        ]):
            y = tf.identity(y)
    return y
