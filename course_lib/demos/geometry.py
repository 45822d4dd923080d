"""Lessons 02 and 03, contrastive and triplet loss in 2-D: the compute/draw pairs behind their figures.

Every picture is a pure ``compute(**params) -> state`` (a dict) and a pure
``draw(state) -> go.Figure``, plus ``readout(state) -> str``;
:class:`course_lib.widgets.Interactive` binds them to sliders.

Notation (COURSE_GUIDE section 1): points x_i with class ids y_i, Euclidean
distance D(i, j) = ||x_i - x_j||, margin m > 0.

**Contrastive loss** (Hadsell, Chopra, LeCun 2006), per ordered pair i != j::

    same class:       l(i, j) = 1/2 D(i, j)^2
    different class:  l(i, j) = 1/2 max(0, m - D(i, j))^2
    L = mean of l(i, j) over the B (B - 1) ordered pairs

(the paper writes Y = 0 for a *similar* pair; here labels are class ids and
"similar" means "same id"). Its gradient on a point x_i is

    dL/dx_i = 2 / (B (B - 1)) * [ sum_{j same}  (x_i - x_j)
                                 - sum_{j diff, D < m} (m - D(i, j)) (x_i - x_j) / D(i, j) ]

so every positive pair pulls (a spring of rest length 0) and every negative
pair inside the margin pushes *both* of its points apart, whatever else is
around them.

**Triplet loss** (Schroff, Kalenichenko, Philbin 2015) of one triplet
(anchor a, positive p, negative n)::

    l(a, p, n) = [D(a, p) - D(a, n) + m]_+

It is *active* (> 0) when D(a, n) - D(a, p) < m. Where active, with unit
vectors u_xy = (x - y) / ||x - y||::

    -dl/da = u_pa + u_an   (towards p, away from n)
    -dl/dp = u_ap          (towards a)
    -dl/dn = u_na          (away from a)

and all three are zero when the triplet is inactive.

Sections: toy batches; contrastive terms and the margin; label-free pairs
(SimCLR-style views); forces (gradients) of both losses; a single triplet;
active triplets and the margin; noisy labels.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import tensorflow as tf
from plotly.subplots import make_subplots

from course_lib import losses, mining, viz
from course_lib.distances import pairwise_distances

INACTIVE_COLOR = "#c7c7c7"
FLIPPED_COLOR = "black"


# =================================================================== toy data
def toy_batch(num_classes=3, per_class=5, spread=0.45, radius=0.8, seed=0, centres=None):
    """A small 2-D batch: ``per_class`` points around each of ``num_classes`` centres.

    Centres sit on a circle of ``radius`` (class c at angle 90 + 360 c / C
    degrees) unless ``centres`` [C, 2] are given; points are centre +
    ``spread`` * N(0, I) from ``np.random.default_rng(seed)``. Returns
    ``(points float32 [B, 2], labels int32 [B])``, class after class.
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


def distances_numpy(points):
    """Euclidean distance matrix [B, B] computed from the differences (float64)."""
    x = np.asarray(points, dtype=np.float64)
    return np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)


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
    """Left: the batch, negative pairs inside the margin in red (width ~ their term),
    positive pairs faint green, the margin circle around the focus point.
    Right: the term 1/2 (m - D)^2 of every contributing negative pair."""
    points, labels, m = state["points"], state["labels"], state["margin"]
    left = viz.points_figure(points, labels)
    pos = np.array(state["positive_pairs"]).reshape(-1, 2)
    _add_segments(left, points[pos[:, 0]], points[pos[:, 1]], viz.POSITIVE_COLOR,
                  "positive pairs (pull: ½D²)", opacity=0.25, width=1)
    inside = np.array(state["inside"]).reshape(-1, 2)
    _add_segments(left, points[inside[:, 0]], points[inside[:, 1]], viz.NEGATIVE_COLOR,
                  "negative pairs with D < m (push)", width=2.5)
    points_on_top(left, len(np.unique(labels)))
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
    fig = side_by_side(
        [left, right],
        [f"margin m = {m:.2f}", "contributing negative pairs: ½(m − D)²"],
        equal_aspect=(True, False), widths=(0.62, 0.38),
    )
    fig.update_xaxes(title_text="pair", row=1, col=2)
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


def pair_statistics(views, image_ids, classes):
    """What "same image or not" gives a batch of 2N views, and what it misses.

    * ``positive_pairs`` = N (unordered: the two views of each image),
      ``negative_pairs`` = 2N (2N - 2) / 2;
    * ``false_negative_share``: share of the negative pairs (different images)
      whose images are of the same class: what a random negative costs;
    * ``hardest_negative_same_class``: for each view, its closest negative in
      pixel space (Euclidean on [0, 1] pixels): the share that is secretly the
      same class. Hard-negative mining without labels mostly mines these.
    * ``contrastive_loss``: :func:`course_lib.losses.contrastive_loss` with
      ``image_ids`` as labels on the raw pixels (margin ``margin``) -- the
      loss runs without any class label.
    """
    x = np.asarray(views, dtype=np.float32).reshape(len(views), -1) / 255.0
    ids = np.asarray(image_ids)
    classes = np.asarray(classes)
    n_views = len(ids)
    same_image = ids[:, None] == ids[None, :]
    same_class = classes[:, None] == classes[None, :]
    upper = np.triu(np.ones((n_views, n_views), dtype=bool), k=1)
    negatives = ~same_image & upper
    d = distances_numpy(x)
    masked = np.where(same_image, np.inf, d)
    hardest = masked.argmin(axis=1)
    positive_distance = np.where(same_image & ~np.eye(n_views, dtype=bool), d, np.nan)
    margin = float(np.median(d[negatives]))
    return dict(
        views=n_views, images=len(np.unique(ids)),
        positive_pairs=int((same_image & upper).sum()), negative_pairs=int(negatives.sum()),
        false_negatives=int((negatives & same_class).sum()),
        false_negative_share=float((negatives & same_class).sum() / negatives.sum()),
        hardest_negative=hardest,
        hardest_negative_same_class=float(np.mean(classes[hardest] == classes)),
        mean_positive_distance=float(np.nanmean(positive_distance)),
        mean_negative_distance=float(d[negatives].mean()),
        margin=margin,
        contrastive_loss=float(losses.contrastive_loss(ids, x, margin=margin)),
    )


def draw_pair_statistics(stats):
    """Bar chart: share of same-class "negatives" for a random vs the hardest negative."""
    shares = [stats["false_negative_share"], stats["hardest_negative_same_class"]]
    fig = go.Figure(go.Bar(
        x=["a random negative", "the closest negative<br>(hard mining, pixels)"], y=shares,
        marker_color=[INACTIVE_COLOR, viz.NEGATIVE_COLOR], text=[f"{s:.0%}" for s in shares],
        textposition="outside", hovertemplate="%{y:.1%}<extra></extra>"))
    fig.update_layout(template="plotly_white", height=340, width=520,
                      title=f"Without labels, how often is a 'negative' the same class? "
                            f"({stats['views']} views)",
                      yaxis=dict(title="share of same-class 'negatives'", range=[0, 1.1],
                                 tickformat=".0%"),
                      margin=dict(l=60, r=20, t=60, b=40))
    return fig


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


def triplet_forces(points, labels, margin=0.5):
    """Forces (minus the gradient) of the batch-all triplet loss on every point.

    Uses :func:`course_lib.losses.triplet_loss` (``mining="all"``: mean over
    the active triplets) and tf.GradientTape; ``triplets`` are all valid
    triplets from :func:`course_lib.mining.mine_triplets`, ``active`` says
    which have a positive loss.
    """
    points = np.asarray(points, dtype=np.float32)
    labels = np.asarray(labels).reshape(-1)
    loss, grad = loss_gradient(
        lambda x: losses.triplet_loss(labels, x, margin=margin, mining="all"), points)
    triplets, gaps = triplet_gaps(labels, points)
    return dict(loss=loss, force=-grad, triplets=triplets, gaps=gaps, active=gaps < margin)


FORCE_CENTRES = ((0.0, 0.0), (2.6, 0.0), (1.3, 3.2))


def force_batch(seed=0, per_class=4, spread=0.4, centres=FORCE_CENTRES, offset=(0.25, -0.25)):
    """A 3-class toy batch with a point at the exact centre of its class and a close negative.

    Point ``centre`` (the first of class 0) is moved to the mean of its
    classmates, so the positive pulls on it cancel exactly; point
    ``intruder`` (the first of class 1) is moved to ``centre + offset``:
    a negative well inside a margin of 0.5, like a "1" that looks like a
    "0". Class 2 lies far from both. Returns ``(points, labels, centre,
    intruder)``.
    """
    points, labels = toy_batch(per_class=per_class, spread=spread, seed=seed, centres=centres)
    c0, c1 = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    centre, intruder = int(c0[0]), int(c1[0])
    points[centre] = points[c0[1:]].mean(axis=0)
    points[intruder] = points[centre] + np.asarray(offset, dtype=np.float32)
    return points, labels, centre, intruder


def compute_contrastive_forces(margin=0.5, seed=0):
    """Lesson 02: contrastive forces on :func:`force_batch`, split into pulls and pushes.

    State keys: ``points``, ``labels``, ``margin``, ``centre``, ``intruder``,
    the :func:`contrastive_forces` entries (``loss``, ``force``, ``pull``,
    ``push``) and ``pushed`` (points with a non-zero push: both ends of every
    negative pair inside the margin).
    """
    points, labels, centre, intruder = force_batch(seed)
    state = dict(points=points, labels=labels, margin=float(margin), centre=centre, intruder=intruder)
    state.update(contrastive_forces(points, labels, margin))
    state["pushed"] = np.flatnonzero(np.linalg.norm(state["push"], axis=1) > 1e-7).tolist()
    return state


def contrastive_forces_readout(state):
    c = state["centre"]
    return (f"points pushed: {state['pushed']} · centre point {c}: |pull| = "
            f"{np.linalg.norm(state['pull'][c]):.1e}, |push| = {np.linalg.norm(state['push'][c]):.1e}")


def draw_contrastive_forces(state, length=0.45):
    """Pulls (positive pairs, green) and pushes (negative pairs inside the margin, red),
    each family of arrows scaled so its longest arrow is ``length``."""
    points, labels = state["points"], state["labels"]
    c, i = state["centre"], state["intruder"]
    fig = viz.points_figure(points, labels)
    for ring, name in ((c, f"point {c}: at the centre of its class"), (i, f"point {i}: a close negative")):
        fig.add_trace(go.Scatter(x=[points[ring, 0]], y=[points[ring, 1]], mode="markers", name=name,
                                 marker=dict(size=17, symbol="circle-open", line=dict(width=2),
                                             color="black" if ring == c else viz.NEGATIVE_COLOR)))
    viz.add_circle(fig, points[c], state["margin"], color="gray")
    arrows_trace(fig, points, state["pull"], length, viz.POSITIVE_COLOR)
    fig.data[-2].name = f"pull from positive pairs ({fig.data[-2].name})"
    arrows_trace(fig, points, state["push"], length, viz.NEGATIVE_COLOR)
    fig.data[-2].name = f"push from negative pairs ({fig.data[-2].name})"
    fig.update_layout(title=f"Contrastive forces, m = {state['margin']:.2f} (grey circle: the margin "
                            f"around point {c})", height=540, width=760,
                      legend=dict(orientation="h", y=-0.1))
    return fig


def compute_forces(margin=0.5, seed=0):
    """Widget compute: contrastive and triplet forces on :func:`force_batch`.

    State keys: ``points``, ``labels``, ``margin``, ``centre``, ``intruder``,
    ``contrastive`` (:func:`contrastive_forces`), ``triplet``
    (:func:`triplet_forces`), ``moving_contrastive`` / ``moving_triplet``
    (number of points with a non-zero force) and ``active_triplets``.
    """
    points, labels, centre, intruder = force_batch(seed)
    c = contrastive_forces(points, labels, margin)
    t = triplet_forces(points, labels, margin)
    return dict(
        points=points, labels=labels, margin=float(margin), centre=centre, intruder=intruder,
        contrastive=c, triplet=t,
        moving_contrastive=int((np.linalg.norm(c["force"], axis=1) > 1e-7).sum()),
        moving_triplet=int((np.linalg.norm(t["force"], axis=1) > 1e-7).sum()),
        active_triplets=int(t["active"].sum()),
    )


def forces_readout(state):
    b = len(state["labels"])
    return (f"points that move: contrastive {state['moving_contrastive']} of {b}, "
            f"triplet {state['moving_triplet']} of {b} · active triplets: "
            f"{state['active_triplets']} of {len(state['triplet']['gaps'])}")


def forces_figure(points, labels, forces, title=None, length=0.5, color="black", highlight=()):
    """The batch with an arrow along each non-zero force (minus the gradient).

    Arrows are scaled together so the longest is ``length`` long (the scale
    is in the legend); ``highlight`` points get a black ring.
    """
    points, forces = np.asarray(points, dtype=float), np.asarray(forces, dtype=float)
    fig = viz.points_figure(points, labels, title=title)
    if len(highlight):
        h = np.asarray(highlight)
        fig.add_trace(go.Scatter(x=points[h, 0], y=points[h, 1], mode="markers",
                                 name="centre point and its close negative",
                                 marker=dict(size=17, symbol="circle-open", color="black",
                                             line=dict(width=2))))
    arrows_trace(fig, points, forces, length=length, color=color)
    return fig


def arrows_trace(fig, starts, vectors, length=0.5, color="black", name=None):
    """:func:`course_lib.viz.add_arrows` for the non-zero ``vectors``, longest = ``length``.

    Always adds the two traces (line, heads), empty when no vector is
    non-zero, so a figure keeps its number of traces as sliders move. The
    heads are oriented along each arrow (``marker.angle``, ``angleref="up"``).
    """
    starts, vectors = np.asarray(starts, dtype=float), np.asarray(vectors, dtype=float)
    norms = np.linalg.norm(vectors, axis=1)
    keep = norms > 1e-7
    scale = length / norms.max() if keep.any() else 1.0
    name = name or f"−gradient (×{scale:.3g})"
    viz.add_arrows(fig, starts[keep].reshape(-1, 2), vectors[keep].reshape(-1, 2), color=color,
                   name=name, scale=scale)
    v = vectors[keep]
    fig.data[-1].marker.angleref = "up"
    fig.data[-1].marker.angle = (np.degrees(np.arctan2(v[:, 0], v[:, 1])) % 360.0).tolist()
    return fig


def draw_forces(state):
    """Side by side: contrastive forces (left) and batch-all triplet forces (right)."""
    points, labels, m = state["points"], state["labels"], state["margin"]
    ring = (state["centre"], state["intruder"])
    left = forces_figure(points, labels, state["contrastive"]["force"], highlight=ring)
    right = forces_figure(points, labels, state["triplet"]["force"], highlight=ring)
    fig = side_by_side(
        [left, right],
        [f"contrastive: {state['moving_contrastive']} points move",
         f"triplet (batch all): {state['moving_triplet']} points move"],  # active triplets: readout
    )
    fig.update_layout(title=f"Where each loss moves the points (m = {m:.2f}; arrows = −gradient, "
                            "scaled per panel)", height=560)
    return fig


# ============================================================ single triplet
def single_triplet(anchor=(0.0, 0.0), positive=(1.0, 0.0), negative=(1.0, 0.8), margin=0.5):
    """Loss, distances and forces of one triplet, by tf.GradientTape.

    loss = [D(a, p) - D(a, n) + m]_+ with D from
    :func:`course_lib.distances.pairwise_distances`; ``forces`` [3, 2] is
    minus the gradient on (a, p, n).
    """
    points = np.array([anchor, positive, negative], dtype=np.float32)

    def loss_fn(x):
        d = pairwise_distances(x)
        return tf.nn.relu(d[0, 1] - d[0, 2] + margin)

    loss, grad = loss_gradient(loss_fn, points)
    d = distances_numpy(points)
    return dict(points=points, margin=float(margin), d_ap=float(d[0, 1]), d_an=float(d[0, 2]),
                loss=loss, active=bool(d[0, 1] - d[0, 2] + margin > 0), forces=-grad)


def compute_triplet(negative_x=1.0, negative_y=0.8, margin=0.5, anchor=(0.0, 0.0),
                    positive=(1.0, 0.0)):
    """Widget compute: :func:`single_triplet` with the negative at (``negative_x``, ``negative_y``)."""
    return single_triplet(anchor, positive, (negative_x, negative_y), margin)


def triplet_readout(state):
    status = "active" if state["active"] else "inactive: no force at all"
    return (f"D(a,p) = {state['d_ap']:.2f}, D(a,n) = {state['d_an']:.2f}, m = {state['margin']:.2f}"
            f" → loss = {state['loss']:.3f} ({status})")


def draw_triplet(state, extent=2.6):
    """The triplet, the circles D(a,p) and D(a,p) + m around the anchor, and the forces."""
    pts, m = state["points"], state["margin"]
    fig = go.Figure()
    viz.add_circle(fig, pts[0], state["d_ap"], color=viz.POSITIVE_COLOR, dash="dot")
    viz.add_circle(fig, pts[0], state["d_ap"] + m, color=viz.NEGATIVE_COLOR, dash="dash")
    xs, ys = [pts[0, 0], pts[1, 0], None, pts[0, 0], pts[2, 0]], [pts[0, 1], pts[1, 1], None, pts[0, 1], pts[2, 1]]
    fig.add_trace(go.Scatter(x=xs[:2], y=ys[:2], mode="lines", name=f"D(a,p) = {state['d_ap']:.2f}",
                             line=dict(color=viz.POSITIVE_COLOR, width=2)))
    fig.add_trace(go.Scatter(x=xs[3:], y=ys[3:], mode="lines", name=f"D(a,n) = {state['d_an']:.2f}",
                             line=dict(color=viz.NEGATIVE_COLOR, width=2)))
    fig.add_trace(go.Scatter(
        x=pts[:, 0], y=pts[:, 1], mode="markers+text", text=["a", "p", "n"], textposition="top left",
        marker=dict(size=14, color=[viz.class_color(0), viz.class_color(0), viz.class_color(1)],
                    line=dict(width=1, color="white")),
        name="anchor, positive, negative", textfont=dict(size=16)))
    arrows_trace(fig, pts, state["forces"], length=0.6, name="−gradient")
    status = "active" if state["active"] else "inactive"
    fig.update_layout(
        title=f"[D(a,p) − D(a,n) + m]₊ = [{state['d_ap']:.2f} − {state['d_an']:.2f} + {m:.2f}]₊ = "
              f"{state['loss']:.3f} ({status}); dashed circle: D(a,p) + m",
        template="plotly_white", height=480, margin=dict(l=20, r=20, t=60, b=20))
    fig.update_xaxes(range=[-extent, extent])
    fig.update_yaxes(range=[-extent, extent], scaleanchor="x", scaleratio=1)
    return fig


def triplet_landscape(anchor=(0.0, 0.0), positive=(1.0, 0.0), margin=0.5, extent=2.6, steps=121):
    """Loss [D(a, p) - ||a - n|| + m]_+ for every negative position n on a grid (NumPy)."""
    grid = np.linspace(-extent, extent, steps)
    gx, gy = np.meshgrid(grid, grid)
    a, p = np.asarray(anchor, dtype=float), np.asarray(positive, dtype=float)
    d_ap = float(np.linalg.norm(a - p))
    d_an = np.hypot(gx - a[0], gy - a[1])
    return dict(grid=grid, loss=np.maximum(0.0, d_ap - d_an + margin), anchor=a, positive=p,
                d_ap=d_ap, margin=float(margin))


def draw_triplet_landscape(state):
    """Heat map of the loss as a function of where the negative sits."""
    fig = go.Figure(go.Heatmap(x=state["grid"], y=state["grid"], z=state["loss"], colorscale="Reds",
                               colorbar=dict(title="loss"), name="loss",
                               hovertemplate="n = (%{x:.2f}, %{y:.2f}): loss %{z:.3f}<extra></extra>"))
    viz.add_circle(fig, state["anchor"], state["d_ap"] + state["margin"], color="black")
    a, p = state["anchor"], state["positive"]
    fig.add_trace(go.Scatter(x=[a[0], p[0]], y=[a[1], p[1]], mode="markers", name="anchor, positive",
                             marker=dict(size=13, color=viz.class_color(0), line=dict(width=1.5, color="white"))))
    for xy, text in ((a, "a"), (p, "p")):
        fig.add_annotation(x=xy[0], y=xy[1], text=text, showarrow=False, yshift=18, bgcolor="white",
                           font=dict(size=14))
    fig.update_layout(title=f"Loss for each position of n (m = {state['margin']:.2f});<br>"
                            f"zero outside the circle of radius D(a,p) + m",
                      template="plotly_white", height=480, width=620, margin=dict(l=20, r=20, t=70, b=20))
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


# ======================================================== active triplets
def triplet_gaps(labels, points, metric="euclidean"):
    """All valid triplets (:func:`course_lib.mining.mine_triplets`, "all") and their
    gaps D(a, n) - D(a, p) as NumPy arrays. A triplet is active iff gap < m."""
    labels = np.asarray(labels).reshape(-1)
    triplets = mining.mine_triplets(labels, points, "all", metric=metric)
    a, p, n = (t.numpy() for t in triplets)
    d = pairwise_distances(points, metric).numpy()
    return mining.Triplets(a, p, n), d[a, n] - d[a, p]


def compute_active(margin=0.5, seed=0, num_classes=3, per_class=5, spread=0.45):
    """Widget compute: which triplets of :func:`toy_batch` are active at ``margin``.

    State keys: ``points``, ``labels``, ``margin``, ``triplets`` (all valid),
    ``gaps`` (D(a, n) - D(a, p)), ``active`` (gap < m), ``num_active``,
    ``num_triplets``, ``loss`` (:func:`course_lib.losses.triplet_loss`,
    batch all = the mean of [m - gap]_+ over the active triplets) and
    ``mean_active_loss`` (the same mean, from the gaps).
    """
    points, labels = toy_batch(num_classes, per_class, spread, seed=seed)
    triplets, gaps = triplet_gaps(labels, points)
    active = gaps < margin
    per_triplet = np.maximum(0.0, margin - gaps)
    return dict(
        points=points, labels=labels, margin=float(margin), triplets=triplets, gaps=gaps,
        active=active, num_active=int(active.sum()), num_triplets=len(gaps),
        loss=float(losses.triplet_loss(labels, points, margin=margin, mining="all")),
        mean_active_loss=float(per_triplet[active].mean()) if active.any() else 0.0,
    )


def active_readout(state):
    return (f"active triplets: {state['num_active']} of {state['num_triplets']}"
            f" · batch-all loss = {state['loss']:.4f}")


def draw_active(state, max_triplets=400):
    """Left: inactive triplets grey, active ones as anchor-positive (green) and
    anchor-negative (red) lines (at most ``max_triplets`` of each kind, to stay legible).
    Right: histogram of the gaps with the margin line."""
    points, labels, m = state["points"], state["labels"], state["margin"]
    active = state["active"]
    left = viz.points_figure(points, labels)
    inactive_t = [t[~active] for t in state["triplets"]]
    active_t = [t[active] for t in state["triplets"]]
    viz.add_triplets(left, points, inactive_t, max_triplets=max_triplets, opacity=0.3)
    for trace, what in zip(left.data[-2:], ("anchor-positive", "anchor-negative")):
        trace.line.color = INACTIVE_COLOR
        trace.name = f"inactive {what}"
    viz.add_triplets(left, points, active_t, max_triplets=max_triplets, opacity=0.6)
    for trace, what in zip(left.data[-2:], ("anchor-positive", "anchor-negative")):
        trace.name = f"active {what}"
    points_on_top(left, len(np.unique(labels)))
    right = gap_histogram({"inactive": state["gaps"][~active], "active": state["gaps"][active]},
                          m, colors=(INACTIVE_COLOR, viz.NEGATIVE_COLOR), barmode="stack")
    fig = side_by_side([left, right], [
        f"active triplets: {state['num_active']} of {state['num_triplets']}",
        "D(a,n) − D(a,p) per triplet (red: active)"],
        equal_aspect=(True, False), widths=(0.55, 0.45))
    fig.update_layout(title=f"Margin m = {m:.2f}: a triplet counts only if D(a,n) < D(a,p) + m",
                      barmode="stack")
    return fig


def gap_histogram(gaps_by_name, margin, colors=None, barmode="overlay", bin_size=None):
    """Histograms of gaps D(a, n) - D(a, p) (one trace per name) and a vertical margin line."""
    fig = go.Figure()
    everything = np.concatenate([np.asarray(g, dtype=float).ravel() for g in gaps_by_name.values()] or [[0.0]])
    if bin_size is None:
        span = float(everything.max() - everything.min()) if everything.size else 1.0
        bin_size = max(span / 40, 1e-3)
    low = float(everything.min()) if everything.size else 0.0
    start = margin - np.ceil((margin - low) / bin_size + 1e-9) * bin_size  # m is a bin edge
    for k, (name, gaps) in enumerate(gaps_by_name.items()):
        color = colors[k] if colors else viz.CLASS_COLORS[k]
        fig.add_trace(go.Histogram(x=np.asarray(gaps, dtype=float), name=name, marker_color=color,
                                   opacity=0.75 if barmode == "overlay" else 1.0,
                                   xbins=dict(start=start, size=bin_size)))
    fig.add_shape(type="line", x0=margin, x1=margin, y0=0, y1=1, xref="x", yref="y domain",
                  line=dict(color="black", dash="dash", width=2))
    fig.add_annotation(x=margin, y=1, xref="x", yref="y domain", text=f"m = {margin:.2f}",
                       showarrow=False, xanchor="left", yanchor="top")
    fig.update_layout(template="plotly_white", barmode=barmode, height=380,
                      xaxis_title="D(a,n) − D(a,p)", yaxis_title="triplets",
                      margin=dict(l=50, r=20, t=50, b=40))
    return fig


def real_batch_gaps(model, images, labels, classes_per_batch=10, samples_per_class=8, seed=0):
    """Gaps D(a, n) - D(a, p) of all triplets of one P x K batch of real images.

    The batch is the first of :func:`course_lib.data.pk_batch_plan`; ``model``
    maps float images (:func:`course_lib.data.to_float`) to embeddings.
    Returns ``(gaps, batch_labels)``.
    """
    from course_lib.data import pk_batch_plan, to_float

    rows = pk_batch_plan(labels, classes_per_batch, samples_per_class, seed=seed, num_batches=1)[0]
    embeddings = np.asarray(model(to_float(np.asarray(images)[rows]), training=False))
    batch_labels = np.asarray(labels)[rows]
    return triplet_gaps(batch_labels, embeddings)[1], batch_labels


def draw_real_gaps(gaps_by_name, margin, title="Triplets of one MNIST batch"):
    """Overlaid gap histograms (e.g. before / after training) and the share active in each."""
    fig = gap_histogram(gaps_by_name, margin, bin_size=0.04)
    for trace in fig.data:
        gaps = np.asarray(trace.x)
        trace.name = f"{trace.name}: {np.mean(gaps < margin):.0%} active"
    fig.update_layout(title=title, height=400)
    return fig


# ============================================================== noisy labels
def flip_labels(labels, fraction, num_classes=None, seed=0):
    """Give ``round(fraction * N)`` examples a wrong label (uniform over the other classes).

    The examples are the first of one seeded permutation and each gets a
    seeded offset in 1..C-1, so a larger ``fraction`` flips a superset of
    the labels a smaller one flips. Returns ``(noisy labels, flipped mask)``.
    """
    labels = np.asarray(labels).reshape(-1)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"`fraction` must lie in [0, 1], got {fraction}.")
    num_classes = int(num_classes or labels.max() + 1)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    offsets = rng.integers(1, num_classes, size=len(labels))
    flipped = np.zeros(len(labels), dtype=bool)
    flipped[order[: int(round(fraction * len(labels)))]] = True
    noisy = np.where(flipped, (labels + offsets) % num_classes, labels).astype(labels.dtype)
    return noisy, flipped


def compute_noise(flip_fraction=0.2, margin=0.5, seed=0, num_classes=4, per_class=6, spread=0.2,
                  radius=1.5):
    """Widget compute: active triplets of a well-separated toy batch with flipped labels.

    The points stay where the true classes put them; only the labels the
    loss sees change. State keys: ``points``, ``true_labels``, ``labels``
    (noisy), ``flipped``, ``margin``, ``triplets``/``gaps``/``active`` (batch
    all, with the noisy labels), ``num_active``, ``active_with_flip``
    (active triplets with a flipped a, p or n), ``hard`` (batch-hard
    triplets: per anchor its farthest positive and closest negative),
    ``hard_active`` and ``hard_with_flip`` (those that are active and involve
    a flipped label), ``num_flipped``.
    """
    points, true_labels = toy_batch(num_classes, per_class, spread, radius, seed)
    labels, flipped = flip_labels(true_labels, flip_fraction, num_classes, seed=seed + 1)
    triplets, gaps = triplet_gaps(labels, points)
    active = gaps < margin
    involves = flipped[triplets.anchor] | flipped[triplets.positive] | flipped[triplets.negative]
    hard = [t.numpy() for t in mining.mine_triplets(labels, points, "hard")]
    d = distances_numpy(points)
    hard_active = d[hard[0], hard[1]] - d[hard[0], hard[2]] + margin > 0
    hard_involves = flipped[hard[0]] | flipped[hard[1]] | flipped[hard[2]]
    return dict(
        points=points, true_labels=true_labels, labels=labels, flipped=flipped,
        num_flipped=int(flipped.sum()), margin=float(margin), flip_fraction=float(flip_fraction),
        triplets=triplets, gaps=gaps, active=active, num_active=int(active.sum()),
        num_triplets=len(gaps), active_with_flip=int((active & involves).sum()),
        hard=mining.Triplets(*hard), hard_active=int(hard_active.sum()),
        hard_with_flip=int((hard_active & hard_involves).sum()), num_anchors=len(hard[0]),
    )


def noise_readout(state):
    share = state["active_with_flip"] / state["num_active"] if state["num_active"] else 0.0
    return (f"flipped labels: {state['num_flipped']} of {len(state['labels'])} · active triplets: "
            f"{state['num_active']} of {state['num_triplets']} ({share:.0%} involve a flipped label)"
            f" · batch-hard: {state['hard_active']} of {state['num_anchors']} active, "
            f"{state['hard_with_flip']} with a flipped label")


def draw_noise(state, max_triplets=300):
    """Left: points coloured by the labels the loss sees, flipped ones ringed, the
    active triplets drawn. Right: active triplets (all / batch hard) with and
    without a flipped label."""
    points, labels, flipped = state["points"], state["labels"], state["flipped"]
    left = viz.points_figure(points, labels)
    left.add_trace(go.Scatter(x=points[flipped, 0], y=points[flipped, 1], mode="markers",
                              name="flipped label", marker=dict(size=18, symbol="circle-open",
                                                                color=FLIPPED_COLOR, line=dict(width=2))))
    active_t = [t[state["active"]] for t in state["triplets"]]
    viz.add_triplets(left, points, active_t, max_triplets=max_triplets, opacity=0.35)
    points_on_top(left, len(np.unique(labels)))
    left.data = left.data[1:3] + left.data[3:] + left.data[:1]  # ring trace last, over the points
    totals = np.array([state["num_triplets"], state["num_anchors"]], dtype=float)
    with_flip = np.array([state["active_with_flip"], state["hard_with_flip"]]) / totals
    without = np.array([state["num_active"] - state["active_with_flip"],
                        state["hard_active"] - state["hard_with_flip"]]) / totals
    groups = ["batch all<br>(of the triplets)", "batch hard<br>(of the anchors)"]
    right = go.Figure([
        go.Bar(x=groups, y=with_flip, name="active, with a flipped label", marker_color=FLIPPED_COLOR,
               hovertemplate="%{y:.1%}<extra></extra>"),
        go.Bar(x=groups, y=without, name="active, all labels right", marker_color=INACTIVE_COLOR,
               hovertemplate="%{y:.1%}<extra></extra>"),
    ])
    fig = side_by_side([left, right], [
        f"{state['num_flipped']} of {len(labels)} labels flipped (ringed)",
        "what the loss trains on"], equal_aspect=(True, False), widths=(0.6, 0.4),
        legend_from=(0, 1))
    fig.update_layout(barmode="stack", title=f"Label noise {state['flip_fraction']:.0%}, "
                                             f"m = {state['margin']:.2f}")
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title="active share", row=1, col=2)
    fig.update_xaxes(tickangle=0, row=1, col=2)  # level labels, clear of the legend
    return fig


# ================================================================== layout
def side_by_side(figures, titles, equal_aspect=None, widths=None, legend_from=(0,)):
    """Put standalone figures (built with :mod:`course_lib.viz`) in one row of subplots.

    Traces and shapes are copied into their panel; equal-aspect panels keep
    a 1:1 scale. Only the panels in ``legend_from`` keep legend entries.
    """
    n = len(figures)
    equal_aspect = equal_aspect or (True,) * n
    fig = make_subplots(rows=1, cols=n, subplot_titles=titles, column_widths=widths,
                        horizontal_spacing=0.08)
    fig.update_annotations(font_size=14)  # the panel titles: a size below the figure title
    for col, panel in enumerate(figures, start=1):
        for trace in panel.data:
            if col - 1 not in legend_from:
                trace = trace.update(showlegend=False)
            fig.add_trace(trace, row=1, col=col)
        suffix = "" if col == 1 else str(col)
        for shape in panel.layout.shapes:
            fig.add_shape(shape.update(xref=_axis_ref(shape.xref, "x", suffix),
                                       yref=_axis_ref(shape.yref, "y", suffix)))
        for note in panel.layout.annotations:
            fig.add_annotation(note.update(xref=_axis_ref(note.xref, "x", suffix),
                                           yref=_axis_ref(note.yref, "y", suffix)))
        if equal_aspect[col - 1]:
            fig.update_yaxes(scaleanchor=f"x{suffix}", scaleratio=1, row=1, col=col)
    fig.update_layout(template="plotly_white", height=460, margin=dict(l=20, r=20, t=80, b=40),
                      legend=dict(orientation="h", y=-0.12, traceorder="normal"))
    return fig


def points_on_top(fig, num_point_traces):
    """Move the first ``num_point_traces`` traces (the points of
    :func:`course_lib.viz.points_figure`) to the end, so lines do not cover them."""
    traces = list(fig.data)
    fig.data = traces[num_point_traces:] + traces[:num_point_traces]
    return fig


def _axis_ref(ref, axis, suffix):
    """Move a shape's or annotation's axis reference ("x", "y domain", ...) to panel ``suffix``."""
    if ref in (None, axis):
        return f"{axis}{suffix}"
    if ref == f"{axis} domain":
        return f"{axis}{suffix} domain"
    return ref


def _add_segments(fig, starts, ends, color, name, opacity=1.0, width=1.5):
    """One line trace of segments starts[k] -> ends[k] (None-separated); empty if none."""
    starts, ends = np.asarray(starts, dtype=float).reshape(-1, 2), np.asarray(ends, dtype=float).reshape(-1, 2)
    xs, ys = [], []
    for s, e in zip(starts, ends):
        xs += [float(s[0]), float(e[0]), None]
        ys += [float(s[1]), float(e[1]), None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, opacity=opacity,
                             line=dict(color=color, width=width), hoverinfo="skip"))
    return fig

