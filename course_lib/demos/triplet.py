"""Lesson 03, the triplet loss and its margin in 2-D: the compute/draw pairs behind its figures.

Every picture is a pure ``compute(**params) -> state`` (a dict) and a pure
``draw(state) -> go.Figure``, plus ``readout(state) -> str``;
:class:`course_lib.widgets.Interactive` binds them to sliders.

Notation (docs/definitions.md): Euclidean distance D, *not squared* (as
Hermans, Beyer and Leibe 2017; FaceNet squares it, see :func:`facenet_gap`).

**Triplet loss** (Schroff, Kalenichenko, Philbin 2015) of one triplet
(anchor a, positive p, negative n), with the gap g = D(a, n) - D(a, p)::

    l(a, p, n) = [D(a, p) - D(a, n) + m]_+ = [m - g]_+          (hinge)
    l(a, p, n) = softplus(D(a, p) - D(a, n)) = ln(1 + e^(-g))  (Hermans' soft margin)

The hinge is *active* (> 0) when g < m; the soft margin never switches off,
its slope sigmoid(-g) only fades. Where the hinge is active, with unit
vectors u_xy = (x - y) / ||x - y||::

    -dl/da = u_pa + u_an   (towards p, away from n; length 2 sin(theta / 2),
                            theta the angle between a->p and a->n)
    -dl/dp = u_ap          (towards a, length 1)
    -dl/dn = u_na          (away from a, length 1)

and all three are zero when the triplet is inactive.

Sections: the loss and its slope against the gap; a single triplet;
contrastive vs triplet forces; active triplets and the margin; noisy labels.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import tensorflow as tf

from course_lib import losses, mining, viz
from course_lib.demos.contrastive import contrastive_forces, draw_profile, force_batch, loss_gradient, toy_batch
from course_lib.distances import pairwise_distances
from course_lib.viz import INACTIVE_COLOR, distances_numpy

FLIPPED_COLOR = "black"

__all__ = ["draw_profile"]  # re-exported: lesson 03 draws triplet_profile with it


# ============================================== loss and slope against the gap
def triplet_profile(margin=0.2, gap_min=-1.0, gap_max=2.0, steps=601):
    """The hinge and the soft-margin triplet loss and the size of their slope, against the gap.

    On a grid of gaps g = D(a, n) - D(a, p)::

        hinge:        l = [m - g]_+,  |dl/dg| = 1 for g < m, 0 from g = m on
        soft margin:  l = ln(1 + e^(-g)),  |dl/dg| = sigmoid(-g) = 1 / (1 + e^g)

    The soft margin has no m: it is the same curve for every slider value.
    State keys as :func:`course_lib.demos.contrastive.contrastive_profile`
    (``x``, ``curves``, ``margin``, ``switch_off`` = m, ``xlabel``,
    ``title``) plus ``soft_slope_at_margin`` (sigmoid(-m)).
    """
    g = np.linspace(gap_min, gap_max, steps)
    curves = {
        "hinge: [m − g]₊": (np.maximum(0.0, margin - g), (g < margin).astype(float), viz.NEGATIVE_COLOR),
        "soft margin: ln(1 + e^(−g))": (np.logaddexp(0.0, -g), 1.0 / (1.0 + np.exp(g)), "#1f77b4"),
    }
    return dict(x=g, curves=curves, margin=float(margin), switch_off=float(margin),
                soft_slope_at_margin=float(1.0 / (1.0 + np.exp(margin))),
                xlabel="gap g = D(a,n) − D(a,p)", title=f"Triplet loss against the gap, m = {margin:.2f}")


def triplet_profile_readout(state):
    return (f"hinge: the push switches off at g = m = {state['switch_off']:.2f} · soft margin: "
            f"slope {state['soft_slope_at_margin']:.2f} there, never exactly 0")


def facenet_gap(d_ap, alpha=0.2):
    """The unsquared gap D(a, n) - D(a, p) that FaceNet's squared margin asks for.

    FaceNet: D(a, p)^2 + alpha < D(a, n)^2, i.e. D(a, n) > sqrt(D(a, p)^2 + alpha),
    so the gap it demands is sqrt(D(a, p)^2 + alpha) - D(a, p): sqrt(alpha) at
    D(a, p) = 0, shrinking like alpha / (2 D(a, p)) for far positives. The
    course's unsquared margin m demands the same gap m everywhere.
    """
    d_ap = np.asarray(d_ap, dtype=float)
    return np.sqrt(d_ap**2 + alpha) - d_ap


# ============================================================ single triplet
def single_triplet(anchor=(0.0, 0.0), positive=(1.0, 0.0), negative=(1.0, 0.8), margin=0.5):
    """Loss, distances and forces of one triplet, by tf.GradientTape.

    loss = [D(a, p) - D(a, n) + m]_+ with D from
    :func:`course_lib.distances.pairwise_distances`; ``forces`` [3, 2] is
    minus the gradient on (a, p, n), ``force_norms`` their lengths and
    ``angle`` the angle theta (degrees) at a between a->p and a->n.
    """
    points = np.array([anchor, positive, negative], dtype=np.float32)

    def loss_fn(x):
        d = pairwise_distances(x)
        return tf.nn.relu(d[0, 1] - d[0, 2] + margin)

    loss, grad = loss_gradient(loss_fn, points)
    d = distances_numpy(points)
    u, v = (points[1] - points[0]).astype(float), (points[2] - points[0]).astype(float)
    cos = u @ v / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-12)
    return dict(points=points, margin=float(margin), d_ap=float(d[0, 1]), d_an=float(d[0, 2]),
                loss=loss, active=bool(d[0, 1] - d[0, 2] + margin > 0), forces=-grad,
                force_norms=np.linalg.norm(grad, axis=1), angle=float(np.degrees(np.arccos(np.clip(cos, -1, 1)))))


def compute_triplet(negative_x=1.0, negative_y=0.8, margin=0.5, anchor=(0.0, 0.0),
                    positive=(1.0, 0.0)):
    """Widget compute: :func:`single_triplet` with the negative at (``negative_x``, ``negative_y``)."""
    return single_triplet(anchor, positive, (negative_x, negative_y), margin)


def triplet_readout(state):
    status = "active" if state["active"] else "inactive: no force at all"
    f_a, f_p, f_n = state["force_norms"]
    return (f"D(a,p) = {state['d_ap']:.2f}, D(a,n) = {state['d_an']:.2f}, m = {state['margin']:.2f}"
            f" → loss = {state['loss']:.3f} ({status}) · |force| on a, p, n: {f_a:.2f}, {f_p:.2f}, {f_n:.2f}"
            f" (θ = {state['angle']:.0f}°)")


def draw_triplet(state, extent=2.6, scale=0.6):
    """The triplet, the circles D(a,p) and D(a,p) + m around the anchor, and the forces
    (drawn ``scale`` long per unit of force, for every position and margin)."""
    pts, m = state["points"], state["margin"]
    fig = go.Figure()
    viz.add_circle(fig, pts[0], state["d_ap"], color=viz.POSITIVE_COLOR, dash="dot")
    viz.add_circle(fig, pts[0], state["d_ap"] + m, color=viz.NEGATIVE_COLOR, dash="dash")
    for end, name, color in ((1, f"D(a,p) = {state['d_ap']:.2f}", viz.POSITIVE_COLOR),
                             (2, f"D(a,n) = {state['d_an']:.2f}", viz.NEGATIVE_COLOR)):
        fig.add_trace(go.Scatter(x=pts[[0, end], 0], y=pts[[0, end], 1], mode="lines", name=name,
                                 line=dict(color=color, width=2)))
    fig.add_trace(go.Scatter(
        x=pts[:, 0], y=pts[:, 1], mode="markers+text", text=["a", "p", "n"], textposition="top left",
        marker=dict(size=14, color=[viz.class_color(0), viz.class_color(0), viz.class_color(1)],
                    line=dict(width=1, color="white")),
        name="anchor, positive, negative", textfont=dict(size=16)))
    viz.add_scaled_arrows(fig, pts, state["forces"], scale=scale, name=f"−gradient (×{scale:g})")
    status = "active" if state["active"] else "inactive"
    fig.update_layout(
        title=f"[D(a,p) − D(a,n) + m]₊ = [{state['d_ap']:.2f} − {state['d_an']:.2f} + {m:.2f}]₊ = "
              f"{state['loss']:.3f} ({status})<br><sup>dotted circle: D(a,p); dashed circle: D(a,p) + m</sup>",
        template="plotly_white", height=500, margin=dict(l=20, r=20, t=80, b=20))
    fig.update_xaxes(range=[-extent, extent])
    fig.update_yaxes(range=[-extent, extent], scaleanchor="x", scaleratio=1)
    return viz.clear_of_modebar(fig)


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
    return viz.clear_of_modebar(fig)


# ==================================================== contrastive vs triplet
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


#: Arrow length per unit of force in :func:`draw_forces`, one per panel (the two
#: losses differ in size), the same for every margin.
FORCE_ARROW_SCALES = dict(contrastive=4.0, triplet=0.5)


def compute_forces(margin=0.5, seed=0):
    """Widget compute: contrastive and triplet forces on the three-class :func:`force_batch`.

    State keys: ``points``, ``labels``, ``margin``, ``centre``, ``intruder``,
    ``contrastive`` (:func:`course_lib.demos.contrastive.contrastive_forces`),
    ``triplet`` (:func:`triplet_forces`), ``moving_contrastive`` /
    ``moving_triplet`` (number of points with a non-zero force) and
    ``active_triplets``.
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


def forces_figure(points, labels, forces, title=None, scale=None, length=0.5, color="black", highlight=(),
                  name=None):
    """The batch with an arrow along each non-zero force (minus the gradient).

    Arrows are ``scale`` long per unit of force (default: the longest is
    ``length`` long; the scale is in the legend); ``highlight`` points get a
    black ring.
    """
    points, forces = np.asarray(points, dtype=float), np.asarray(forces, dtype=float)
    fig = viz.points_figure(points, labels, title=title)
    if len(highlight):
        h = np.asarray(highlight)
        fig.add_trace(go.Scatter(x=points[h, 0], y=points[h, 1], mode="markers",
                                 name="centre point and its close negative",
                                 marker=dict(size=17, symbol="circle-open", color="black",
                                             line=dict(width=2))))
    viz.add_scaled_arrows(fig, points, forces, scale=scale, length=length, color=color, name=name)
    return fig


def draw_forces(state, scales=None):
    """Side by side: contrastive forces (left) and batch-all triplet forces (right),
    each panel with its own arrow scale, fixed for every margin."""
    scales = scales or FORCE_ARROW_SCALES
    points, labels, m = state["points"], state["labels"], state["margin"]
    ring = (state["centre"], state["intruder"])
    panels = [forces_figure(points, labels, state[kind]["force"], scale=scales[kind], highlight=ring,
                            name=f"−gradient, {kind} (×{scales[kind]:g})")
              for kind in ("contrastive", "triplet")]
    fig = viz.side_by_side(
        panels,
        [f"contrastive: {state['moving_contrastive']} points move",
         f"triplet (batch all): {state['moving_triplet']} points move"],  # active triplets: readout
    )
    arrows = len(panels[0].data) + len(panels[1].data) - 2
    fig.data[arrows].showlegend = True  # the right panel's arrows: their scale in the legend
    fig.update_layout(title=f"Where each loss moves the points (m = {m:.2f})<br><sup>arrows = −gradient, "
                            "one scale per panel for every m</sup>", height=560)
    return fig


# ======================================================== active triplets
def triplet_gaps(labels, points, metric="euclidean"):
    """All valid triplets (:func:`course_lib.mining.mine_triplets`, "all") and their
    gaps D(a, n) - D(a, p) as NumPy arrays. A triplet is active iff gap < m."""
    labels = np.asarray(labels).reshape(-1)
    triplets = mining.mine_triplets(labels, points, "all", metric=metric)
    a, p, n = (np.asarray(t) for t in triplets)
    d = np.asarray(pairwise_distances(points, metric))
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
    viz.add_triplets(left, points, inactive_t, max_triplets=max_triplets, opacity=0.3,
                     colors=(INACTIVE_COLOR, INACTIVE_COLOR),
                     names=("inactive anchor-positive", "inactive anchor-negative"))
    viz.add_triplets(left, points, active_t, max_triplets=max_triplets, opacity=0.6,
                     names=("active anchor-positive", "active anchor-negative"))
    viz.points_on_top(left, len(np.unique(labels)))
    right = gap_histogram({"inactive": state["gaps"][~active], "active": state["gaps"][active]},
                          m, colors=(INACTIVE_COLOR, viz.NEGATIVE_COLOR), barmode="stack")
    fig = viz.side_by_side([left, right], [
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
                      margin=dict(l=50, r=20, t=60, b=40))
    return viz.clear_of_modebar(fig)


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
    hard = [np.asarray(t) for t in mining.mine_triplets(labels, points, "hard")]
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
    active_t = [t[state["active"]] for t in state["triplets"]]
    viz.add_triplets(left, points, active_t, max_triplets=max_triplets, opacity=0.35)
    viz.points_on_top(left, len(np.unique(labels)))
    left.add_trace(go.Scatter(x=points[flipped, 0], y=points[flipped, 1], mode="markers",
                              name="flipped label", marker=dict(size=18, symbol="circle-open",
                                                                color=FLIPPED_COLOR, line=dict(width=2))))
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
    fig = viz.side_by_side([left, right], [
        f"{state['num_flipped']} of {len(labels)} labels flipped (ringed)",
        "what the loss trains on"], equal_aspect=(True, False), widths=(0.6, 0.4),
        legend_from=(0, 1))
    fig.update_layout(barmode="stack", title=f"Label noise {state['flip_fraction']:.0%}, "
                                             f"m = {state['margin']:.2f}")
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title="active share", row=1, col=2)
    fig.update_xaxes(tickangle=0, row=1, col=2)  # level labels, clear of the legend
    return fig
