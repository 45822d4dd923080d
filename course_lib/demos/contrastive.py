"""Lesson 02, the contrastive loss in 2-D: the compute/draw pairs behind its figures.

Every picture is a pure ``compute(**params) -> state`` (a dict) and a pure
``draw(state) -> go.Figure``, plus ``readout(state) -> str``;
:class:`course_lib.widgets.Interactive` binds them to sliders.

Notation (docs/definitions.md): points x_i with class ids y_i, Euclidean
distance D(i, j) = ||x_i - x_j||, margin m > 0.

**Contrastive loss** (Hadsell, Chopra, LeCun 2006), per ordered pair i != j::

    same class:       l(i, j) = 1/2 D(i, j)^2
    different class:  l(i, j) = 1/2 max(0, m - D(i, j))^2
    L = mean of l(i, j) over the B (B - 1) ordered pairs

(the paper writes Y = 0 for a *similar* pair; here labels are class ids and
"similar" means "same id"). Its derivative in the distance is D for a
positive pair and -(m - D) for a negative pair closer than m, 0 beyond;
its gradient on a point x_i is

    dL/dx_i = 2 / (B (B - 1)) * [ sum_{j same}  (x_i - x_j)
                                 - sum_{j diff, D < m} (m - D(i, j)) (x_i - x_j) / D(i, j) ]

so every positive pair pulls (a spring of rest length 0) and every negative
pair inside the margin pushes *both* of its points apart, whatever else is
around them.

Sections: toy batches; the loss and its slope against the distance; the
contrastive terms and the margin; label-free pairs (SimCLR-style views) and
false negatives; forces (gradients). Lesson 03 (:mod:`course_lib.demos.triplet`)
reuses the toy batch, the slope figure and the forces.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import tensorflow as tf
from plotly.subplots import make_subplots

from course_lib import losses, viz
from course_lib.viz import distances_numpy


# =================================================================== toy data
def toy_batch(num_classes=3, per_class=5, spread=0.45, radius=0.8, seed=0, centres=None):
    """A small 2-D batch: ``per_class`` points around each of ``num_classes`` centres.

    Centres sit on a circle of ``radius`` (class c at angle 90 + 360 c / C
    degrees) unless ``centres`` [C, 2] are given; points are centre +
    ``spread`` * N(0, I) from ``np.random.default_rng(seed)``. Returns
    ``(points float32 [B, 2], labels int32 [B])``, class after class (so the
    first classes' points do not depend on how many classes follow).
    """
    rng = np.random.default_rng(seed)
    if centres is None:
        angles = np.pi / 2 + 2 * np.pi * np.arange(num_classes) / num_classes
        centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    centres = np.asarray(centres, dtype=float)
    num_classes = len(centres)
    labels = np.repeat(np.arange(num_classes), per_class).astype(np.int32)
    points = centres[labels] + spread * rng.normal(size=(len(labels), 2))
    return points.astype(np.float32), labels


# ================================================ loss and slope against D
def contrastive_profile(margin=1.0, d_max=2.0, steps=401):
    """The contrastive terms of one pair and the size of their slope, against D.

    On a grid of distances D in [0, ``d_max``]::

        positive pair:  l = 1/2 D^2,             |dl/dD| = D          (never switches off)
        negative pair:  l = 1/2 max(0, m - D)^2, |dl/dD| = max(0, m - D)  (off from D = m)

    State keys: ``x`` (the grid), ``curves`` {name: (loss, |slope|, colour)},
    ``margin``, ``switch_off`` (where the negative pair's slope reaches 0:
    D = m), ``xlabel`` and ``title``.
    """
    d = np.linspace(0.0, d_max, steps)
    hinge = np.maximum(0.0, margin - d)
    curves = {
        "positive pair: ½D²": (0.5 * d**2, d, viz.POSITIVE_COLOR),
        "negative pair: ½ max(0, m − D)²": (0.5 * hinge**2, hinge, viz.NEGATIVE_COLOR),
    }
    return dict(x=d, curves=curves, margin=float(margin), switch_off=float(margin),
                xlabel="distance D of the pair", title=f"Contrastive loss of one pair, m = {margin:.2f}")


def profile_readout(state):
    return (f"m = {state['margin']:.2f}: the negative pair's push switches off at "
            f"{state['switch_off']:.2f}; the positive pair's pull never does")


def draw_profile(state):
    """Two panels against the same x: the loss (left) and the size of its slope
    (right, the strength of the pull or push), the margin as a dashed line."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["loss", "|slope| = strength of the pull / push"],
                        horizontal_spacing=0.1)
    for name, (loss, slope, color) in state["curves"].items():
        dash = "dot" if "soft" in name else "solid"
        for col, y in ((1, loss), (2, slope)):
            fig.add_trace(go.Scatter(x=state["x"], y=y, mode="lines", name=name, legendgroup=name,
                                     showlegend=col == 1, line=dict(color=color, width=3, dash=dash)),
                          row=1, col=col)
    for col in (1, 2):
        fig.add_vline(x=state["margin"], line=dict(color="black", dash="dash"), row=1, col=col)
    fig.add_annotation(x=state["margin"], y=1, xref="x2", yref="y2 domain", text=f"m = {state['margin']:.2f}",
                       showarrow=False, xanchor="left", yanchor="top")
    fig.update_xaxes(title_text=state["xlabel"])
    fig.update_layout(template="plotly_white", height=400, title=state["title"],
                      margin=dict(l=50, r=20, t=90, b=50), legend=dict(orientation="h", y=-0.25))
    return viz.clear_of_modebar(fig)


# ============================================================== contrastive
def contrastive_term(distance, same, margin):
    """One pair's contrastive term: 1/2 D^2 if ``same`` else 1/2 max(0, m - D)^2."""
    if same:
        return 0.5 * float(distance) ** 2
    return 0.5 * max(0.0, float(margin) - float(distance)) ** 2


def contrastive_terms(points, labels, margin):
    """[B, B] per-pair contrastive terms (diagonal 0), in NumPy, from the definition."""
    d = distances_numpy(points)
    labels = np.asarray(labels).reshape(-1)
    same = labels[:, None] == labels[None, :]
    terms = np.where(same, 0.5 * d**2, 0.5 * np.maximum(0.0, margin - d) ** 2)
    np.fill_diagonal(terms, 0.0)
    return terms


def contrastive_state(points, labels, margin=1.0):
    """Everything lesson 02 shows about the contrastive loss of one batch.

    State keys: ``points``, ``labels``, ``margin``, ``distances`` [B, B],
    ``terms`` [B, B] (:func:`contrastive_terms`), ``loss`` (from
    :func:`course_lib.losses.contrastive_loss`), ``mean_of_terms`` (the mean of
    ``terms`` over the B (B - 1) ordered pairs: equal to ``loss``),
    ``positive_pairs`` / ``negative_pairs`` (unordered (i, j), i < j),
    ``inside`` (negative pairs with D < m, the only ones that contribute,
    sorted by decreasing term) with their ``inside_terms``,
    ``positive_sum`` / ``negative_sum`` (sums of the terms over ordered pairs).
    """
    points = np.asarray(points, dtype=np.float32)
    labels = np.asarray(labels).reshape(-1)
    b = len(labels)
    d = distances_numpy(points)
    terms = contrastive_terms(points, labels, margin)
    same = labels[:, None] == labels[None, :]
    upper = np.triu(np.ones((b, b), dtype=bool), k=1)
    positive_pairs = [tuple(map(int, ij)) for ij in np.argwhere(same & upper)]
    negative_pairs = [tuple(map(int, ij)) for ij in np.argwhere(~same & upper)]
    inside = [(i, j) for i, j in negative_pairs if d[i, j] < margin]
    inside.sort(key=lambda ij: -terms[ij])
    off = ~np.eye(b, dtype=bool)
    return dict(
        points=points, labels=labels, margin=float(margin), distances=d, terms=terms,
        loss=float(losses.contrastive_loss(labels, points, margin=margin)),
        mean_of_terms=float(terms[off].mean()),
        positive_pairs=positive_pairs, negative_pairs=negative_pairs,
        inside=inside, inside_terms=[float(terms[ij]) for ij in inside],
        positive_sum=float(terms[same & off].sum()), negative_sum=float(terms[~same].sum()),
    )


def compute_contrastive(margin=1.0, focus=0, seed=0, num_classes=3, per_class=5, spread=0.45):
    """Widget compute: the contrastive state of :func:`toy_batch` at ``margin``.

    ``focus`` is the point whose margin circle is drawn; ``focus_inside``
    lists its negatives closer than m (the ones it is pushed away from).
    """
    points, labels = toy_batch(num_classes, per_class, spread, seed=seed)
    state = contrastive_state(points, labels, margin)
    focus = int(focus) % len(labels)
    state["focus"] = focus
    state["focus_inside"] = sorted(j for pair in state["inside"] if focus in pair for j in pair if j != focus)
    return state


def contrastive_readout(state):
    return (f"negative pairs inside the margin: {len(state['inside'])} of {len(state['negative_pairs'])}"
            f" · loss = {state['loss']:.4f}")


def draw_contrastive(state):
    """Left: the batch, negative pairs inside the margin in red, positive pairs
    faint green, the margin circle around the focus point.
    Right: the term 1/2 (m - D)^2 of every contributing negative pair."""
    points, labels, m = state["points"], state["labels"], state["margin"]
    left = viz.points_figure(points, labels)
    pos = np.array(state["positive_pairs"]).reshape(-1, 2)
    viz.add_segments(left, points[pos[:, 0]], points[pos[:, 1]], viz.POSITIVE_COLOR,
                     "positive pairs (pull: ½D²)", opacity=0.25, width=1)
    inside = np.array(state["inside"]).reshape(-1, 2)
    viz.add_segments(left, points[inside[:, 0]], points[inside[:, 1]], viz.NEGATIVE_COLOR,
                     "negative pairs with D < m (push)", width=2.5)
    viz.points_on_top(left, len(np.unique(labels)))
    if "focus" in state:
        f = state["focus"]
        viz.add_circle(left, points[f], m, color=viz.class_color(labels[f]))
        left.add_trace(go.Scatter(x=[points[f, 0]], y=[points[f, 1]], mode="markers",
                                  name=f"focus: point {f} and its margin m",
                                  marker=dict(size=16, symbol="circle-open", color="black",
                                              line=dict(width=2))))
    names = [f"{i}–{j}" for i, j in state["inside"]]
    right = go.Figure(go.Bar(x=names, y=state["inside_terms"], marker_color=viz.NEGATIVE_COLOR,
                             name="½(m − D)²", showlegend=False,
                             hovertemplate="pair %{x}: %{y:.4f}<extra></extra>"))
    fig = viz.side_by_side(
        [left, right],
        [f"margin m = {m:.2f}", "term ½(m − D)² of each negative pair i–j inside m"],
        equal_aspect=(True, False), widths=(0.62, 0.38),
    )
    fig.update_layout(title=f"Contrastive loss {state['loss']:.4f} = mean of the "
                            f"{len(labels) * (len(labels) - 1)} ordered pair terms")
    return fig


# ===================================================== label-free pairs (SSL)
def augment(images, rng, max_shift=3, erase=8):
    """Random views of uint8 images [N, 28, 28]: a shift of up to ``max_shift``
    pixels in x and y (zero fill) and a blanked ``erase`` x ``erase`` square."""
    images = np.asarray(images)
    views = np.zeros_like(images)
    size = images.shape[1]
    for k, image in enumerate(images):
        dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
        shifted = np.zeros_like(image)
        ys, yd = (slice(0, size - dy), slice(dy, size)) if dy >= 0 else (slice(-dy, size), slice(0, size + dy))
        xs, xd = (slice(0, size - dx), slice(dx, size)) if dx >= 0 else (slice(-dx, size), slice(0, size + dx))
        shifted[yd, xd] = image[ys, xs]
        if erase:
            y0, x0 = rng.integers(0, size - erase + 1, size=2)
            shifted[y0:y0 + erase, x0:x0 + erase] = 0
        views[k] = shifted
    return views


def two_view_batch(images, labels, num_images=64, seed=0):
    """SimCLR-style batch: ``num_images`` random images, two augmented views each.

    Returns ``views`` uint8 [2N, 28, 28] ordered (image 0 view a, image 0 view
    b, image 1 view a, ...), ``image_ids`` [2N] (the only "label" contrastive
    self-supervision needs) and ``classes`` [2N] (hidden from the loss; used
    here to count false negatives).
    """
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(images), size=num_images, replace=False)
    originals = np.repeat(np.asarray(images)[chosen], 2, axis=0)
    return dict(
        views=augment(originals, rng),
        image_ids=np.repeat(np.arange(num_images), 2).astype(np.int32),
        classes=np.repeat(np.asarray(labels)[chosen], 2),
    )


def negative_shares(views, image_ids, classes):
    """Of a view's negatives (views of *other* images), how many show its class?

    ``false_negative_share``: over all unordered negative pairs, the share
    whose two images have the same class (what a random negative costs:
    about 1/C for C balanced classes); ``hardest_negative`` [2N]: each
    view's closest negative in pixel space (Euclidean on [0, 1] pixels) and
    ``hardest_negative_same_class``: the share of those that are secretly
    the same class. Also ``distances`` [2N, 2N] and the pair ``masks``.
    """
    x = np.asarray(views, dtype=np.float32).reshape(len(views), -1) / 255.0
    ids, classes = np.asarray(image_ids), np.asarray(classes)
    n_views = len(ids)
    same_image = ids[:, None] == ids[None, :]
    same_class = classes[:, None] == classes[None, :]
    upper = np.triu(np.ones((n_views, n_views), dtype=bool), k=1)
    negatives = ~same_image & upper
    squared = (x**2).sum(1)[:, None] + (x**2).sum(1)[None, :] - 2.0 * x @ x.T  # [2N, 2N], no [2N, 2N, P]
    d = np.sqrt(np.maximum(squared.astype(np.float64), 0.0))
    np.fill_diagonal(d, 0.0)
    hardest = np.where(same_image, np.inf, d).argmin(axis=1)
    return dict(
        pixels=x, distances=d, same_image=same_image, negatives=negatives,
        false_negatives=int((negatives & same_class).sum()),
        false_negative_share=float((negatives & same_class).sum() / negatives.sum()),
        hardest_negative=hardest,
        hardest_negative_same_class=float(np.mean(classes[hardest] == classes)),
    )


def pair_statistics(views, image_ids, classes):
    """What "same image or not" gives a batch of 2N views, and what it misses.

    * ``positive_pairs`` = N (unordered: the two views of each image),
      ``negative_pairs`` = 2N (2N - 2) / 2;
    * the shares of :func:`negative_shares` (false negatives among random
      and among the hardest negatives);
    * ``contrastive_loss``: :func:`course_lib.losses.contrastive_loss` with
      ``image_ids`` as labels on the raw pixels (margin ``margin``, the
      median negative distance) -- the loss runs without any class label.
    """
    shares = negative_shares(views, image_ids, classes)
    ids, d, same_image, negatives = image_ids, shares["distances"], shares["same_image"], shares["negatives"]
    n_views = len(ids)
    positive_distance = np.where(same_image & ~np.eye(n_views, dtype=bool), d, np.nan)
    margin = float(np.median(d[negatives]))
    return dict(
        views=n_views, images=len(np.unique(ids)),
        positive_pairs=int(np.triu(same_image, k=1).sum()), negative_pairs=int(negatives.sum()),
        false_negatives=shares["false_negatives"], false_negative_share=shares["false_negative_share"],
        hardest_negative=shares["hardest_negative"],
        hardest_negative_same_class=shares["hardest_negative_same_class"],
        mean_positive_distance=float(np.nanmean(positive_distance)),
        mean_negative_distance=float(d[negatives].mean()),
        margin=margin,
        contrastive_loss=float(losses.contrastive_loss(ids, shares["pixels"], margin=margin)),
    )


def draw_pair_statistics(stats):
    """Bar chart: share of same-class "negatives" for a random vs the hardest negative."""
    fig = go.Figure(_share_bars(stats["false_negative_share"], stats["hardest_negative_same_class"]))
    fig.update_layout(template="plotly_white", height=340, width=560,
                      title=f"Without labels, how often is a 'negative'<br>the same class? ({stats['views']} views)",
                      yaxis=dict(title="share of same-class 'negatives'", range=[0, 1.1], tickformat=".0%"),
                      margin=dict(l=60, r=20, t=80, b=40))
    return viz.clear_of_modebar(fig)


def _share_bars(random_share, hardest_share):
    shares = [random_share, hardest_share]
    return go.Bar(x=["a random negative", "the closest negative<br>(hard mining, pixels)"], y=shares,
                  marker_color=[viz.INACTIVE_COLOR, viz.NEGATIVE_COLOR], text=[f"{s:.0%}" for s in shares],
                  textposition="outside", hovertemplate="%{y:.1%}<extra></extra>", showlegend=False)


def false_negative_curve(images, labels, class_counts=range(2, 11), num_images=64, seeds=(0, 1, 2)):
    """:func:`negative_shares` of two-view batches drawn from the first C classes, for each C.

    The classes are taken in one seeded random order, so the set for C is
    contained in the set for C + 1; for each C and seed, ``num_images``
    images of those classes, two views each (:func:`two_view_batch`). The
    shares are averaged over ``seeds``. Returns ``class_counts``,
    ``random`` and ``hardest`` (one share per C), ``analytic`` (1/C) and
    ``num_images``.
    """
    images, labels = np.asarray(images), np.asarray(labels).reshape(-1)
    order = np.random.default_rng(0).permutation(np.unique(labels))
    counts = [int(c) for c in class_counts]
    random_share, hardest_share = [], []
    for c in counts:
        rows = np.flatnonzero(np.isin(labels, order[:c]))
        runs = [negative_shares(**two_view_batch(images[rows], labels[rows], num_images, seed))
                for seed in seeds]
        random_share.append(float(np.mean([r["false_negative_share"] for r in runs])))
        hardest_share.append(float(np.mean([r["hardest_negative_same_class"] for r in runs])))
    return dict(class_counts=np.array(counts), random=np.array(random_share),
                hardest=np.array(hardest_share), analytic=1.0 / np.array(counts, dtype=float),
                num_images=int(num_images))


def compute_false_negatives(num_classes=10, curve=None):
    """Widget compute: the point of ``curve`` (:func:`false_negative_curve`) at ``num_classes``.

    State keys: the curve's, plus ``num_classes``, ``random_share``,
    ``hardest_share`` and ``ratio`` (hardest / random) at that C.
    """
    if curve is None:
        raise ValueError("`curve` is required: pass false_negative_curve(images, labels).")
    counts = list(curve["class_counts"])
    if num_classes not in counts:
        raise ValueError(f"`num_classes` must be one of {counts}, got {num_classes}.")
    k = counts.index(num_classes)
    random_share, hardest_share = float(curve["random"][k]), float(curve["hardest"][k])
    return dict(curve, num_classes=int(num_classes), random_share=random_share,
                hardest_share=hardest_share, ratio=hardest_share / max(random_share, 1e-12))


def false_negatives_readout(state):
    return (f"C = {state['num_classes']} classes: same-class share among random negatives "
            f"{state['random_share']:.1%} (1/C = {1 / state['num_classes']:.1%}), among the hardest "
            f"{state['hardest_share']:.1%} ({state['ratio']:.1f}×)")


def draw_false_negatives(state):
    """Left: both shares against the number of classes C, with the 1/C line and a
    marker at the chosen C. Right: the two shares at that C as bars."""
    c = state["class_counts"]
    fig = make_subplots(rows=1, cols=2, column_widths=(0.62, 0.38), horizontal_spacing=0.12,
                        subplot_titles=["share of same-class 'negatives' against C",
                                        f"at C = {state['num_classes']}"])
    for y, name, color, dash in ((state["hardest"], "hardest negative (pixels), measured", viz.NEGATIVE_COLOR, "solid"),
                                 (state["random"], "random negative, measured", "#7f7f7f", "solid"),
                                 (state["analytic"], "random negative, 1/C (analytic)", "black", "dot")):
        fig.add_trace(go.Scatter(x=c, y=y, mode="lines+markers" if dash == "solid" else "lines", name=name,
                                 line=dict(color=color, dash=dash, width=2.5)), row=1, col=1)
    fig.add_vline(x=state["num_classes"], line=dict(color="black", dash="dash", width=1), row=1, col=1)
    fig.add_trace(_share_bars(state["random_share"], state["hardest_share"]), row=1, col=2)
    fig.update_xaxes(title_text="number of classes C", dtick=1, row=1, col=1)
    fig.update_yaxes(range=[0, 1.1], tickformat=".0%")
    fig.update_layout(template="plotly_white", height=430,
                      title=f"False negatives without labels ({2 * state['num_images']} views of "
                            f"{state['num_images']} images per batch)",
                      margin=dict(l=50, r=20, t=90, b=50), legend=dict(orientation="h", y=-0.25))
    return viz.clear_of_modebar(fig)


# ==================================================================== forces
def loss_gradient(loss_fn, points):
    """``(value, gradient [B, 2])`` of ``loss_fn(tf.Variable(points))`` by tf.GradientTape."""
    x = tf.Variable(np.asarray(points, dtype=np.float32))
    with tf.GradientTape() as tape:
        value = loss_fn(x)
    return float(value), tape.gradient(value, x).numpy()


def contrastive_forces(points, labels, margin=1.0):
    """Forces (minus the gradient) of the contrastive loss on every point.

    ``force`` comes from tf.GradientTape on
    :func:`course_lib.losses.contrastive_loss`; ``pull`` and ``push`` are the
    positive-pair and negative-pair parts written out (module docstring):

        pull_i = -2 / (B (B - 1)) sum_{j same} (x_i - x_j)
        push_i = +2 / (B (B - 1)) sum_{j diff, D < m} (m - D) (x_i - x_j) / D

    and ``pull + push`` equals ``force``.
    """
    points = np.asarray(points, dtype=np.float32)
    labels = np.asarray(labels).reshape(-1)
    loss, grad = loss_gradient(lambda x: losses.contrastive_loss(labels, x, margin=margin), points)
    x = points.astype(np.float64)
    b = len(labels)
    diff = x[:, None, :] - x[None, :, :]  # x_i - x_j
    d = np.linalg.norm(diff, axis=-1)
    same = (labels[:, None] == labels[None, :]) & ~np.eye(b, dtype=bool)
    inside = (labels[:, None] != labels[None, :]) & (d < margin)
    scale = 2.0 / (b * (b - 1))
    pull = -scale * np.einsum("ij,ijk->ik", same.astype(float), diff)
    weight = np.where(inside, (margin - d) / np.where(d > 0, d, 1.0), 0.0)
    push = scale * np.einsum("ij,ijk->ik", weight, diff)
    return dict(loss=loss, force=-grad, pull=pull, push=push)


FORCE_CENTRES = ((0.0, 0.0), (2.6, 0.0), (1.3, 3.2))

#: Arrow length per unit of force in :func:`draw_contrastive_forces`: one scale for
#: every margin, so the pushes grow with m on screen as they do in the maths.
FORCE_ARROW_SCALE = 4.0


def force_batch(seed=0, per_class=4, spread=0.4, centres=FORCE_CENTRES, offset=(0.25, -0.25)):
    """A toy batch with a point at the exact centre of its class and a close negative.

    Point ``centre`` (the first of class 0) is moved to the mean of its
    classmates, so the positive pulls on it cancel exactly; point
    ``intruder`` (the first of class 1) is moved to ``centre + offset``:
    a negative well inside a margin of 0.5, like a "1" that looks like a
    "0". With the default three ``centres``, class 2 lies far from both
    (lesson 03); ``centres=FORCE_CENTRES[:2]`` gives the same two first
    classes alone (lesson 02). Returns ``(points, labels, centre, intruder)``.
    """
    points, labels = toy_batch(per_class=per_class, spread=spread, seed=seed, centres=centres)
    c0, c1 = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    centre, intruder = int(c0[0]), int(c1[0])
    points[centre] = points[c0[1:]].mean(axis=0)
    points[intruder] = points[centre] + np.asarray(offset, dtype=np.float32)
    return points, labels, centre, intruder


def compute_contrastive_forces(margin=0.5, seed=0):
    """Lesson 02: contrastive forces on the two-class :func:`force_batch`, as pulls and pushes.

    State keys: ``points``, ``labels``, ``margin``, ``centre``, ``intruder``,
    the :func:`contrastive_forces` entries (``loss``, ``force``, ``pull``,
    ``push``) and ``pushed`` (points with a non-zero push: both ends of every
    negative pair inside the margin).
    """
    points, labels, centre, intruder = force_batch(seed, centres=FORCE_CENTRES[:2])
    state = dict(points=points, labels=labels, margin=float(margin), centre=centre, intruder=intruder)
    state.update(contrastive_forces(points, labels, margin))
    state["pushed"] = np.flatnonzero(np.linalg.norm(state["push"], axis=1) > 1e-7).tolist()
    return state


def contrastive_forces_readout(state):
    c = state["centre"]
    return (f"points pushed: {state['pushed']} · centre point {c}: |pull| = "
            f"{np.linalg.norm(state['pull'][c]):.1e}, |push| = {np.linalg.norm(state['push'][c]):.1e}")


def draw_contrastive_forces(state, scale=FORCE_ARROW_SCALE):
    """Pulls (positive pairs, green) and pushes (negative pairs inside the margin, red),
    all drawn ``scale`` long per unit of force, whatever the margin."""
    points, labels = state["points"], state["labels"]
    c, i = state["centre"], state["intruder"]
    fig = viz.points_figure(points, labels)
    for ring, name in ((c, f"point {c}: at the centre of its class"), (i, f"point {i}: a close negative")):
        fig.add_trace(go.Scatter(x=[points[ring, 0]], y=[points[ring, 1]], mode="markers", name=name,
                                 marker=dict(size=17, symbol="circle-open", line=dict(width=2),
                                             color="black" if ring == c else viz.NEGATIVE_COLOR)))
    viz.add_circle(fig, points[c], state["margin"], color="gray")
    viz.add_scaled_arrows(fig, points, state["pull"], scale=scale, color=viz.POSITIVE_COLOR,
                          name=f"pull from positive pairs (−gradient ×{scale:g})")
    viz.add_scaled_arrows(fig, points, state["push"], scale=scale, color=viz.NEGATIVE_COLOR,
                          name=f"push from negative pairs (−gradient ×{scale:g})")
    fig.update_layout(title=f"Contrastive forces, m = {state['margin']:.2f}<br><sup>grey circle: the margin "
                            f"around point {c}; one arrow scale for every m</sup>",
                      height=480, width=820, margin=dict(l=20, r=20, t=80, b=20),
                      legend=dict(orientation="h", y=-0.12))
    return viz.clear_of_modebar(fig)
