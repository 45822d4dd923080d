"""Embedding networks: a small CNN that maps a 28 x 28 image to a point in R^d.

The same backbone serves the ranking losses (embedding head) and the
softmax cross-entropy baseline (classification head), so the two can be
compared fairly (one protocol: docs/definitions.md).
"""

from __future__ import annotations

import keras
from keras import layers

from course_lib._checks import is_int
from course_lib.options import check_choice


def backbone(input_shape=(28, 28, 1), width=32, name="backbone"):
    """Two conv blocks and a dense layer: about 0.25 M weights, fast on 2 CPU cores."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Conv2D(width, 3, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D()(x)  # 14 x 14
    x = layers.Conv2D(2 * width, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)  # 7 x 7
    x = layers.Flatten(name="conv_features")(x)  # 7 x 7 x 2 width = 3136 numbers
    x = layers.Dense(128, activation="relu")(x)
    return keras.Model(inputs, x, name=name)


def embedding_network(embedding_dim=64, l2_normalize=True, input_shape=(28, 28, 1), width=32, seed=None):
    """CNN backbone + linear projection to ``embedding_dim`` (+ optional L2 normalisation).

    With ``l2_normalize=True`` every embedding lies on the unit sphere, so
    Euclidean distances are in [0, 2] and a margin is comparable across runs.
    """
    if not is_int(embedding_dim) or embedding_dim < 1:
        raise ValueError(f"`embedding_dim` must be a positive int, got {embedding_dim!r}.")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Dense(embedding_dim, name="projection")(backbone(input_shape, width)(inputs))
    if l2_normalize:
        x = layers.UnitNormalization(name="l2_normalize")(x)
    return keras.Model(inputs, x, name="embedding_network")


def classifier_network(num_classes=10, input_shape=(28, 28, 1), width=32, seed=None):
    """The same backbone with a softmax head: the cross-entropy baseline.

    Its 128-d penultimate layer (``model.get_layer("backbone")``) serves as
    the baseline's embedding for retrieval.
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=input_shape, name="image")
    logits = layers.Dense(num_classes, name="logits")(backbone(input_shape, width)(inputs))
    return keras.Model(inputs, logits, name="classifier_network")


def embedding_model(model):
    """The part of ``model`` that outputs the embedding: a classifier's 128-d backbone, else ``model``."""
    is_classifier = any(layer.name == "logits" for layer in model.layers)
    return model.get_layer("backbone") if is_classifier else model


#: Which layer's output :func:`feature_model` returns, from the input side up.
FEATURES = ("conv", "backbone", "embedding")


def feature_model(model, features):
    """Image -> the features of one layer of ``model``, as a Keras model (for retrieval).

    * ``"conv"``: the flattened output of the last conv block, 3136 numbers
      (7 x 7 positions x 64 channels): *what* the filters found *where*;
    * ``"backbone"``: the 128-d dense layer on top of it;
    * ``"embedding"``: what the model outputs (:func:`embedding_model`: the
      projection, or a classifier's backbone).

    The loss shapes the layers close to it the most: for classes it never
    saw, the early layers keep more of what tells them apart (lesson 06).
    """
    if check_choice("features", features, FEATURES) == "embedding":
        return embedding_model(model)
    backbone_model = model.get_layer("backbone")
    if features == "backbone":
        return backbone_model
    flatten = next(layer for layer in backbone_model.layers if isinstance(layer, layers.Flatten))
    return keras.Model(backbone_model.input, flatten.output, name="conv_features")
