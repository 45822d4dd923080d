"""Contrastive learning without labels: the pure functions behind lesson 10.

SimCLR's recipe (Chen et al. 2020) in the course's terms: take a batch of
b images, make two augmented views of each (:mod:`course_lib.augment`), give
both views the image's index as their "class", and train with NT-Xent
(:func:`course_lib.losses.nt_xent_loss`). With s_ij the cosine similarity
and t the temperature, the row of view a whose partner is p is

    l_a = -log( exp(s_ap / t) / sum_{k != a} exp(s_ak / t) )

(with exactly two views per image, N(a) is every view but a and p, so the
contract's denominator exp(s_ap/t) + sum_{n in N(a)} exp(s_an/t) is this
sum over k != a). It is the N-pairs softmax of lesson 07 over 2b - 1
candidates, one of them right.

Widgets (``compute(...) -> state``, ``draw(state) -> go.Figure``):

* :func:`view_grid` / :func:`draw_view_grid`: images and two views of each,
  for an augmentation ``strength``;
* :func:`temperature_row` / :func:`draw_temperature_row`: a toy similarity
  row and its softmax at temperature t (what NT-Xent weighs);
* :func:`similarity_matrix` / :func:`draw_similarity_matrix`: the B x B
  similarities of a batch of views, with its positives: image index
  (NT-Xent) or class label (SupCon, Khosla et al. 2020).

And the lesson's run: :func:`train_contrastive` (label-free training) and
:func:`spaces_table` (leave-one-out retrieval of several embeddings).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from course_lib import augment, models, retrieval, training
from course_lib.options import defaults_of
from course_lib.viz import NEGATIVE_COLOR, POSITIVE_COLOR, image_grid

__all__ = [
    "view_grid", "draw_view_grid", "readout_view_grid",
    "TOY_SIMILARITIES", "row_softmax", "temperature_row", "draw_temperature_row", "readout_temperature_row",
    "similarity_matrix", "draw_similarity_matrix", "readout_similarity_matrix",
    "train_contrastive", "embed", "spaces_table",
]


# ------------------------------------------------------------- view pairs
def view_grid(strength, *, images, seed=0):
    """Two views of each image at ``strength``: state with uint8 ``originals``, ``view_a``, ``view_b``.

    ``changed`` is the mean absolute pixel change of a view (0 to 1 scale),
    averaged over both views: 0 exactly at ``strength=0``.
    """
    x = augment.as_float_images(images)
    view_a, view_b = (v.numpy() for v in augment.two_views(x, [seed, 0], strength))
    to_uint8 = lambda v: np.round(v[..., 0] * 255).astype(np.uint8)  # noqa: E731
    return {
        "strength": float(strength),
        "originals": to_uint8(x), "view_a": to_uint8(view_a), "view_b": to_uint8(view_b),
        "changed": float(np.mean([np.abs(view_a - x).mean(), np.abs(view_b - x).mean()])),
    }


def readout_view_grid(state):
    return f"strength {state['strength']:.2f}: a view changes {100 * state['changed']:.1f}% of the ink scale per pixel"


def draw_view_grid(state):
    """Three rows: the images, their first views, their second views."""
    n = len(state["originals"])
    images = np.concatenate([state["originals"], state["view_a"], state["view_b"]])
    titles = [f"image {i}" for i in range(n)] + [f"view a of {i}" for i in range(n)] + [f"view b of {i}" for i in range(n)]
    return image_grid(images, titles=titles, columns=n, height_per_row=120,
                      title=f"Two random views of each image, strength {state['strength']:.2f}")


# ------------------------------------------------------ temperature on a row
#: A toy similarity row: cosine similarities of one anchor to the other 7 views of
#: its batch; index 0 is its positive (the other view of its image).
TOY_SIMILARITIES = np.array([0.8, 0.9, 0.6, 0.3, 0.1, 0.0, -0.2, -0.5])


def row_softmax(similarities, temperature):
    """softmax(s / t), computed stably (the largest logit subtracted first)."""
    z = np.asarray(similarities, dtype=np.float64) / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


def temperature_row(temperature, similarities=TOY_SIMILARITIES, positive=0):
    """The NT-Xent row of a toy anchor at ``temperature``.

    ``probabilities`` = softmax(s / t) over the candidates; the row's loss is
    -log probabilities[positive]. dl/ds_k = p_k / t for a negative k: the
    negatives' share of the push is their softmax weight, so a low t puts
    nearly all of it on the most similar (hardest) negative.
    """
    s = np.asarray(similarities, dtype=np.float64)
    p = row_softmax(s, temperature)
    negatives = np.arange(len(s)) != positive
    return {
        "temperature": float(temperature), "similarities": s, "probabilities": p, "positive": positive,
        "loss": float(-np.log(p[positive])),
        "hardest_share": float(p[negatives].max() / p[negatives].sum()),
    }


def readout_temperature_row(state):
    return (f"t = {state['temperature']:.2f}: p(positive) = {state['probabilities'][state['positive']]:.3f}, "
            f"loss = {state['loss']:.3f}; the hardest negative gets {100 * state['hardest_share']:.0f}% "
            "of the negatives' weight")


def draw_temperature_row(state):
    """Bars: softmax(s / t) of each candidate (positive green, negatives red), s on the x labels."""
    s, p = state["similarities"], state["probabilities"]
    names = [("positive" if k == state["positive"] else f"negative {k}") + f"<br>s = {v:+.1f}"
             for k, v in enumerate(s)]
    colors = [POSITIVE_COLOR if k == state["positive"] else NEGATIVE_COLOR for k in range(len(s))]
    fig = go.Figure(go.Bar(x=names, y=p, marker_color=colors, text=[f"{v:.2f}" for v in p],
                           textposition="outside", showlegend=False, hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(
        title=dict(text=f"softmax(s / t) of one anchor's row, t = {state['temperature']:.2f}", y=0.95),
        yaxis=dict(title="weight in the softmax", range=[0, 1.1]), template="plotly_white", height=380,
        margin=dict(l=60, r=20, t=80, b=60), modebar=dict(orientation="v"),
    )
    return fig


# ------------------------------------------------------ the B x B similarities
def similarity_matrix(positives, temperature=None, *, embeddings, image_ids, class_labels):
    """The batch's cosine similarities and its positive pairs.

    ``positives``: ``"image"`` (NT-Xent: the other view of the same image)
    or ``"class"`` (SupCon: every other view of the same class).
    ``temperature`` None shows s itself; a number shows each row's softmax
    over k != a of s / t (the diagonal, never a candidate, is blank).
    ``top1`` = the fraction of views whose most similar other view is a positive.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    u = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    s = u @ u.T
    ids = np.asarray(image_ids if positives == "image" else class_labels).reshape(-1)
    eye = np.eye(len(ids), dtype=bool)
    mask = (ids[:, None] == ids[None, :]) & ~eye
    shown = np.where(eye, np.nan, s)
    if temperature is not None:
        logits = np.where(eye, -np.inf, s / temperature)
        shown = np.exp(logits - logits.max(axis=1, keepdims=True))
        shown = np.where(eye, np.nan, shown / shown.sum(axis=1, keepdims=True))
    nearest = np.argmax(np.where(eye, -np.inf, s), axis=1)
    return {"positives": positives, "temperature": temperature, "similarities": s, "shown": shown,
            "mask": mask, "top1": float(mask[np.arange(len(ids)), nearest].mean()),
            "positives_per_view": float(mask.sum(axis=1).mean())}


def readout_similarity_matrix(state):
    kind = "other view of the same image" if state["positives"] == "image" else "same class"
    return (f"positives = {kind}: {state['positives_per_view']:.1f} per view; "
            f"{100 * state['top1']:.0f}% of views have a positive as their most similar item")


def draw_similarity_matrix(state):
    """Heat map of the similarities (or of each row's softmax), positives circled."""
    rows, cols = np.nonzero(state["mask"])
    is_softmax = state["temperature"] is not None
    # the diagonal (never a candidate) is NaN: sent as null, a blank cell (NaN is not valid JSON)
    z = [[None if np.isnan(v) else float(v) for v in row] for row in state["shown"]]
    fig = go.Figure(go.Heatmap(z=z, colorscale="Viridis", zmin=None if is_softmax else -1,
                               zmax=None if is_softmax else 1,
                               colorbar=dict(title="softmax" if is_softmax else "cosine")))
    fig.add_trace(go.Scatter(x=cols, y=rows, mode="markers", name="positive pair",
                             marker=dict(symbol="circle-open", size=7, color="white", line=dict(width=1.5))))
    what = f"row softmax of s / t, t = {state['temperature']:.2f}" if is_softmax else "cosine similarity s"
    fig.update_layout(
        title=dict(text=f"Batch of views: {what}", y=0.96), template="plotly_white", height=520, width=620,
        xaxis=dict(title="view k", constrain="domain"), yaxis=dict(title="view a", autorange="reversed",
                                                                    scaleanchor="x"),
        legend=dict(orientation="h", y=-0.15), margin=dict(l=60, r=20, t=70, b=80), modebar=dict(orientation="v"),
    )
    return fig


# ---------------------------------------------------------------- training
def train_contrastive(images, *, temperature=None, embedding_dim=64, width=32, seed=0, labels=None,
                      progress=True, **options):
    """Train a fresh :func:`course_lib.models.embedding_network` with NT-Xent on two views per image.

    The loop is :func:`course_lib.training.train_self_supervised` (what
    ``python -m course_lib train --self-supervised`` runs): label = the
    image's index in the batch, so no class label is used. ``labels`` (class
    ids) switch to SupCon with those labels instead (the supervised variant:
    every view of the class is a positive). ``temperature`` None takes the
    label-free default (``train_self_supervised``'s ``temperature``); ``options``
    (``epochs``, ``batch_size``, ``strength``, ``learning_rate``, ...) go to
    ``train_self_supervised``, whose defaults they keep when left out.
    Prints one line per epoch with ``progress``.
    Returns ``(model, history)``, history = {"loss": [...], "seconds": [...]} per epoch.
    """
    model = models.embedding_network(embedding_dim, width=width, seed=seed)
    loss = "nt-xent" if labels is None else "supcon"
    name = {"nt-xent": "NT-Xent", "supcon": "SupCon"}[loss]
    epochs = options.get("epochs", defaults_of(training.train_self_supervised)["epochs"])

    def show(record):
        print(f"epoch {record.epoch}/{epochs}: {name} {record.loss:.3f}, {record.seconds:.1f} s")

    history = training.train_self_supervised(
        model, images, loss=loss, loss_options=None if temperature is None else {"temperature": temperature},
        seed=seed, class_labels=labels, progress=False, on_epoch=show if progress else None, **options)
    return model, {"loss": history["loss"], "seconds": history["seconds"]}


def embed(model, images, layer=None, batch_size=1000):
    """Embeddings of uint8 images: the model's output, or with ``layer="backbone"`` the
    features before the projection head (128-d, not normalised)."""
    net = model if layer is None else model.get_layer(layer)
    x = augment.as_float_images(images)
    return np.concatenate([np.asarray(net(x[i:i + batch_size], training=False))
                           for i in range(0, len(x), batch_size)])


def spaces_table(spaces, labels):
    """{name: {"P@1": ..., "MAP@R": ...}}: leave-one-out retrieval of each space."""
    table = {}
    for name, x in spaces.items():
        m = retrieval.evaluate(x, labels)
        table[name] = {"P@1": m["precision_at_1"], "MAP@R": m["map_at_r"]}
    return table
