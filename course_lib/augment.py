"""Two augmented views of every image: the "same" of contrastive learning without labels.

Self-supervised contrastive learning (SimCLR, Chen et al. 2020) has no class
labels. It makes its own positive pairs: two random *views* of one image,
and declares everything else in the batch a negative. What the network
learns to ignore is exactly what the augmentations change, so they define
what "same" means. For 28 x 28 digits a view is, in this order:

1. a small rotation, angle ~ U(-max_degrees, max_degrees) * strength,
2. a shift, (dx, dy) ~ U(-max_shift, max_shift) * strength pixels
   (1 and 2 are one affine resampling, bilinear, zeros outside the image),
3. erasing: a square of side ~ U(0, max_erase) * strength pixels, at a
   random place, set to 0 (the background),
4. Gaussian noise of standard deviation ``noise * strength``, then clipped to [0, 1].

``strength`` scales all four; ``strength=0`` returns the image unchanged.
Every random number comes from TensorFlow's *stateless* generators and a
seed, so a view is a pure function of (image, seed, strength): the same
seed gives the same view, here and in a ``tf.data`` pipeline.

    ds = view_pairs(images, batch_size=128, seed=0)   # tf.data.Dataset
    for x, y in ds.take(1):
        x.shape, y.shape    # (256, 28, 28, 1), (256,): rows i and 128 + i share label y = image index
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from course_lib._checks import check_non_negative, is_int

__all__ = ["AUGMENT_DEFAULTS", "random_view", "two_views", "view_pairs", "as_float_images"]

#: The size of each augmentation at ``strength=1``.
AUGMENT_DEFAULTS = dict(max_degrees=15.0, max_shift=3.0, max_erase=10.0, noise=0.1)


def as_float_images(images):
    """uint8 [N, 28, 28] (or float in [0, 1]) -> float32 [N, 28, 28, 1] in [0, 1]."""
    x = np.asarray(images)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return x[..., None] if x.ndim == 3 else x


def _affine(images, angle, shift):
    """Rotate each image [N, H, W, C] by ``angle`` [N] (radians) about its centre, then shift by ``shift`` [N, 2].

    ImageProjectiveTransformV3 maps each *output* pixel (x, y) to the input
    point (a0 x + a1 y + a2, b0 x + b1 y + b2) and reads it there (bilinear):
    the inverse of the rotation and of the shift.
    """
    height, width = images.shape[1], images.shape[2]
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    x0, y0 = cx + shift[:, 0], cy + shift[:, 1]  # where the centre lands
    zero = tf.zeros_like(angle)
    transforms = tf.stack([cos, sin, cx - cos * x0 - sin * y0,
                           -sin, cos, cy + sin * x0 - cos * y0, zero, zero], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=[height, width],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT",
    )


def _erase(images, corners, side):
    """Per image, set a ``side`` x ``side`` square to 0; ``corners`` [N, 2] in [0, 1) place it."""
    height, width = images.shape[1], images.shape[2]
    top = (corners[:, 0] * (height - side))[:, None, None, None]
    left = (corners[:, 1] * (width - side))[:, None, None, None]
    side = side[:, None, None, None]
    rows = tf.range(height, dtype=tf.float32)[None, :, None, None]
    cols = tf.range(width, dtype=tf.float32)[None, None, :, None]
    inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
    return tf.where(inside, 0.0, images)


def random_view(images, seed, strength=1.0, **sizes):
    """One augmented view of each image: float32 [N, 28, 28, 1] (or one [28, 28, 1]) in [0, 1].

    ``seed``: 2 ints; each image draws its own angle, shift, square and noise.
    ``sizes`` override :data:`AUGMENT_DEFAULTS` (``max_degrees``, ``max_shift``,
    ``max_erase``, ``noise``), each the size at ``strength=1``.
    """
    strength = check_non_negative("strength", strength)
    size = {**AUGMENT_DEFAULTS, **sizes}
    images = tf.convert_to_tensor(images, tf.float32)
    if images.shape.rank == 3:
        return random_view(images[None], seed, strength, **sizes)[0]
    n = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(tf.convert_to_tensor(seed, tf.int64), num=2)
    u = tf.random.stateless_uniform([n, 6], seeds[0], -1.0, 1.0)  # angle, dx, dy, erase side, corner (2)
    angle = u[:, 0] * (math.radians(size["max_degrees"]) * strength)
    views = _affine(images, angle, u[:, 1:3] * (size["max_shift"] * strength))
    views = _erase(views, (u[:, 4:6] + 1.0) / 2.0, tf.abs(u[:, 3]) * (size["max_erase"] * strength))
    noise = tf.random.stateless_normal(tf.shape(views), seeds[1]) * (size["noise"] * strength)
    return tf.clip_by_value(views + noise, 0.0, 1.0)


def two_views(images, seed, strength=1.0, **sizes):
    """Two independent views of each image, (views_a, views_b), from one seed (2 ints)."""
    first, second = tf.unstack(tf.random.experimental.stateless_split(tf.convert_to_tensor(seed, tf.int64), 2))
    return random_view(images, first, strength, **sizes), random_view(images, second, strength, **sizes)


def view_pairs(images, batch_size=128, seed=0, strength=1.0, epochs=None, **sizes):
    """A ``tf.data.Dataset`` of batches ``(views [2b, 28, 28, 1], labels [2b])`` for NT-Xent.

    Each epoch shuffles the images (seeded), takes ``batch_size`` distinct
    images per batch (the last, smaller batch is dropped) and makes two views
    of each: rows i and b + i are the views of image i of the batch and share
    its index as label. The views depend on (seed, epoch, batch) only.
    ``epochs=None`` repeats for ever.
    """
    strength = check_non_negative("strength", strength)
    x = as_float_images(images)
    n = len(x)
    if not is_int(batch_size) or not 2 <= batch_size <= n:
        raise ValueError(f"`batch_size` must be an int in [2, {n}] (the number of images), got {batch_size!r}.")
    images_t = tf.constant(x)
    per_epoch = n // batch_size

    def make_views(epoch, batch, indices):
        views = two_views(tf.gather(images_t, indices), tf.stack([tf.cast(seed, tf.int64), epoch * per_epoch + batch]),
                          strength, **sizes)
        return tf.concat(views, axis=0), tf.concat([indices, indices], axis=0)

    def one_epoch(epoch):
        # a seeded permutation per epoch: batches never mix epochs, so their images are distinct
        order = tf.argsort(tf.random.stateless_uniform([n], tf.stack([tf.cast(seed, tf.int64), -1 - epoch])))
        batches = tf.reshape(tf.cast(order[: per_epoch * batch_size], tf.int64), [per_epoch, batch_size])
        return tf.data.Dataset.from_tensor_slices((tf.range(per_epoch, dtype=tf.int64), batches)).map(
            lambda batch, indices: make_views(epoch, batch, indices))

    epoch_ds = tf.data.Dataset.range(epochs if epochs is not None else 2**62)
    return epoch_ds.flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)
