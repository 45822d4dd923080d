"""course_lib.augment: two views per image, seeded, strength 0 = identity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from course_lib import augment


def digits(n=6, seed=0):
    """Synthetic 28 x 28 'digits': a bright bar or square on a black background, uint8."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        top, left = rng.integers(6, 12, size=2)
        images[i, top:top + 12, left:left + 4 + (i % 3) * 3] = 255
    return images


def test_as_float_images():
    x = augment.as_float_images(digits(3))
    assert x.shape == (3, 28, 28, 1) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert augment.as_float_images(x).shape == (3, 28, 28, 1)  # floats pass through


def test_view_shape_dtype_and_range():
    x = augment.as_float_images(digits())
    view = augment.random_view(x, [1, 2]).numpy()
    assert view.shape == x.shape and view.dtype == np.float32
    assert view.min() >= 0.0 and view.max() <= 1.0
    single = augment.random_view(x[0], [1, 2]).numpy()
    assert single.shape == (28, 28, 1)


def test_same_seed_same_view_other_seed_other_view():
    x = augment.as_float_images(digits())
    a = augment.random_view(x, [3, 4]).numpy()
    np.testing.assert_array_equal(a, augment.random_view(x, [3, 4]).numpy())
    assert not np.allclose(a, augment.random_view(x, [3, 5]).numpy())


def test_strength_zero_is_identity():
    x = augment.as_float_images(digits())
    for seed in ([0, 0], [7, 11]):
        np.testing.assert_array_equal(augment.random_view(x, seed, strength=0.0).numpy(), x)
        a, b = augment.two_views(x, seed, strength=0)
        np.testing.assert_array_equal(a.numpy(), x)
        np.testing.assert_array_equal(b.numpy(), x)


def test_two_views_differ_from_each_other_and_from_the_image():
    x = augment.as_float_images(digits())
    a, b = (v.numpy() for v in augment.two_views(x, [5, 6]))
    for i in range(len(x)):
        assert np.abs(a[i] - b[i]).mean() > 0.01
        assert np.abs(a[i] - x[i]).mean() > 0.01


def test_change_grows_with_strength():
    x = augment.as_float_images(digits(16))
    change = [np.abs(augment.random_view(x, [9, 9], strength=s).numpy() - x).mean() for s in (0.0, 0.5, 1.0, 2.0)]
    assert change[0] == 0.0
    assert change[1] < change[2] < change[3]


def test_each_augmentation_alone():
    x = augment.as_float_images(digits(4))
    off = dict(max_degrees=0.0, max_shift=0.0, max_erase=0.0, noise=0.0)
    np.testing.assert_array_equal(augment.random_view(x, [1, 1], **off).numpy(), x)
    # a pure shift moves the ink and keeps its total (the bars stay inside the image)
    shifted = augment.random_view(x, [1, 1], **{**off, "max_shift": 3.0}).numpy()
    assert not np.allclose(shifted, x)
    np.testing.assert_allclose(shifted.sum(axis=(1, 2, 3)), x.sum(axis=(1, 2, 3)), rtol=1e-4)
    # erasing only ever removes ink
    erased = augment.random_view(x, [1, 1], **{**off, "max_erase": 10.0}).numpy()
    assert np.all(erased <= x) and erased.sum() < x.sum()
    # noise only: values move, by about the noise level where not clipped
    noisy = augment.random_view(x, [1, 1], **{**off, "noise": 0.1}).numpy()
    # on the background the noise is clipped at 0: mean of max(0, N(0, 0.1^2)) = 0.1 / sqrt(2 pi) = 0.040
    assert 0.035 < np.mean(noisy[x == 0]) < 0.045


def test_affine_rotation_and_shift_are_exact():
    # the resampling is centred: +90 degrees is a quarter turn clockwise on screen (rows go down) ...
    x = augment.as_float_images(digits(1))
    turned = augment._affine(tf.constant(x), tf.constant([math.pi / 2]), tf.zeros([1, 2])).numpy()
    np.testing.assert_allclose(turned[0, :, :, 0], np.rot90(x[0, :, :, 0], k=-1), atol=1e-5)
    # ... and a shift (dx, dy) = (2, 1) moves the ink 2 columns right and 1 row down
    shifted = augment._affine(tf.constant(x), tf.constant([0.0]), tf.constant([[2.0, 1.0]])).numpy()
    np.testing.assert_array_equal(shifted[0, :, :, 0], np.roll(x[0, :, :, 0], (1, 2), axis=(0, 1)))


def test_bad_strength_and_batch_size():
    x = digits(4)
    with pytest.raises(ValueError, match="strength"):
        augment.random_view(augment.as_float_images(x), [0, 0], strength=-1.0)
    with pytest.raises(ValueError, match="batch_size"):
        augment.view_pairs(x, batch_size=5)
    with pytest.raises(ValueError, match="batch_size"):
        augment.view_pairs(x, batch_size=1)


def test_view_pairs_batches():
    images = digits(10, seed=1)
    batches = list(augment.view_pairs(images, batch_size=4, seed=0, epochs=2))
    assert len(batches) == 2 * (10 // 4)  # the last, smaller batch of each epoch is dropped
    for views, labels in batches:
        views, labels = views.numpy(), labels.numpy()
        assert views.shape == (8, 28, 28, 1) and views.dtype == np.float32 and labels.dtype == np.int64
        first, second = labels[:4], labels[4:]
        np.testing.assert_array_equal(first, second)  # rows i and b + i: two views of one image
        assert len(set(first.tolist())) == 4  # distinct images in a batch
        for i in range(4):
            assert not np.allclose(views[i], views[4 + i])  # the two views differ
    # each epoch visits distinct images, in a new order
    epoch1 = np.concatenate([b[1].numpy()[:4] for b in batches[:2]])
    epoch2 = np.concatenate([b[1].numpy()[:4] for b in batches[2:]])
    assert len(set(epoch1.tolist())) == 8 and not np.array_equal(epoch1, epoch2)


def test_view_pairs_is_deterministic_under_a_seed():
    images = digits(8, seed=2)
    run = lambda seed: [v.numpy() for v, _ in augment.view_pairs(images, 4, seed=seed, epochs=2)]  # noqa: E731
    for a, b in zip(run(3), run(3)):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(run(3), run(4)))


def test_view_pairs_strength_zero_gives_the_images():
    images = digits(6, seed=3)
    views, labels = next(iter(augment.view_pairs(images, 3, seed=0, strength=0.0, epochs=1)))
    np.testing.assert_array_equal(views.numpy(), augment.as_float_images(images)[labels.numpy()])
