"""Lesson 04, P x K batches and triplet mining: the compute/draw pairs behind its figures.

Four pictures, each a pure ``compute(**params) -> state`` and ``draw(state) -> go.Figure``
(plus a ``readout(state) -> str``), bound to sliders by :class:`course_lib.widgets.Interactive`:

1. **Counting** (:func:`pk_counts`, :func:`pk_state`, :func:`draw_masks`). A P x K batch holds
   B = P K embeddings, K of each of P classes. Each anchor has

       K - 1 positives,   B - K negatives,

   so the batch has B (K - 1) ordered positive pairs and B (K - 1) (B - K)
   valid triplets (a, p, n). Batch-hard mining keeps B of them (one per
   anchor), semi-hard mining B (K - 1) (one per positive pair).
2. **A real batch** (:func:`real_pk_batch`, :func:`draw_batch`): the first batch
   that :func:`course_lib.data.pk_batches` yields, as an image grid.
3. **Mining on a 2-D toy batch** (:func:`mining_state`, :func:`draw_mining`):
   the triplets :func:`course_lib.mining.mine_triplets` returns for "all",
   "hard", "semi-hard" and "random" (no mining: one uniformly drawn positive and
   negative per anchor, the baseline), with the band D(a, p) < D(a, n) < D(a, p) + m
   around an anchor. Each triplet is *hard* (D(a, n) < D(a, p)), *semi-hard*
   (D(a, p) <= D(a, n) < D(a, p) + m) or *easy* (D(a, n) >= D(a, p) + m);
   it is *active* when its loss [D(a, p) - D(a, n) + m]_+ is > 0. A semi-hard
   triplet uses the *fallback* when no negative of a is farther than p.
   :func:`semi_hard_variants` shows what three libraries call "semi-hard".
4. **Mining across replicas** (:func:`replica_report`, :func:`draw_replicas`):
   ``tf.distribute`` splits a global batch into R contiguous slices, and each
   replica mines only inside its slice of B / R embeddings. The analysis is
   :func:`course_lib.distributed.per_replica_mining_report`; the demo draws it.

Notation: P classes x K samples per class, as Hermans et al. (2017) write it.
Some texts swap the letters (K classes x P samples); see docs/definitions.md.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from course_lib import distributed, losses, mining, viz
from course_lib.viz import distances_numpy

# ------------------------------------------------------------ 1. counting
def pk_counts(batch_size=32, samples_per_class=4):
    """Counts of a P x K batch with B = ``batch_size``, K = ``samples_per_class``.

    State keys: ``valid`` (False when B is not a multiple of K, with a
    ``message`` saying why), ``P``, ``K``, ``B``, ``labels`` (class after
    class, as :func:`course_lib.data.pk_batch_plan` orders a batch),
    ``positive_mask`` / ``negative_mask`` ([B, B] bool, from
    :mod:`course_lib.mining`) and the counts

    * ``positives_per_anchor`` = K - 1, ``negatives_per_anchor`` = B - K,
    * ``positive_pairs`` = B (K - 1) (ordered pairs a != p),
    * ``valid_triplets`` = B (K - 1) (B - K),
    * ``hard_triplets`` = B, ``semi_hard_triplets`` = B (K - 1) (when the
      batch has both positives and negatives, else 0),

    each read off the masks (``*_from_masks``) as well as from the formula.
    ``message`` also warns about batches that give a zero triplet loss
    (K = 1: no positives; P = 1: no negatives).
    """
    b, k = int(batch_size), int(samples_per_class)
    state = dict(B=b, K=k, valid=False, P=None, message="")
    if b < 1 or k < 1:
        state["message"] = f"B={b}, K={k}: both must be at least 1."
        return state
    if b % k:
        lower, upper = (b // k) * k, (b // k + 1) * k
        state["message"] = (
            f"B={b} is not a multiple of K={k}: a P x K batch has B = P * K "
            f"(try B={lower or k} or B={upper})."
        )
        return state
    p = b // k
    labels = np.repeat(np.arange(p), k)
    pos = mining.positive_mask(labels).numpy()
    neg = mining.negative_mask(labels).numpy()
    has_both = k > 1 and p > 1
    state.update(
        valid=True, P=p, labels=labels, positive_mask=pos, negative_mask=neg,
        positives_per_anchor=k - 1, negatives_per_anchor=b - k,
        positive_pairs=b * (k - 1), valid_triplets=b * (k - 1) * (b - k),
        hard_triplets=b if has_both else 0, semi_hard_triplets=b * (k - 1) if has_both else 0,
        positives_per_anchor_from_masks=int(pos.sum(axis=1).max()),
        negatives_per_anchor_from_masks=int(neg.sum(axis=1).max()),
        positive_pairs_from_masks=int(pos.sum()),
        valid_triplets_from_masks=int(pos.sum(axis=1) @ neg.sum(axis=1)),
    )
    if k == 1:
        state["message"] = "K=1: no anchor has a positive, so every triplet loss is 0."
    elif p == 1:
        state["message"] = "P=1: a single class, no negatives, so every triplet loss is 0."
    return state


def pk_state(classes_per_batch=8, samples_per_class=4):
    """:func:`pk_counts` of the batch of P = ``classes_per_batch`` classes x K = ``samples_per_class``.

    The lesson's widget moves P and K, so every position is a valid batch
    (B = P K); :func:`pk_counts` still explains a B that K does not divide.
    """
    p, k = int(classes_per_batch), int(samples_per_class)
    return pk_counts(p * k, k)


def pk_readout(state):
    if not state["valid"]:
        return f"invalid batch: {state['message']}"
    text = (
        f"P={state['P']} classes x K={state['K']}: {state['positives_per_anchor']} positives and "
        f"{state['negatives_per_anchor']} negatives per anchor, {state['positive_pairs']} positive pairs, "
        f"{state['valid_triplets']} valid triplets"
    )
    return text + (f" ({state['message']})" if state["message"] else "")


def draw_masks(state):
    """The B x B pair mask as a heatmap: self (grey), positive (green), negative (red)."""
    fig = go.Figure()
    if not state["valid"]:
        fig.add_annotation(text=state["message"], showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper", font=dict(size=14, color=viz.NEGATIVE_COLOR))
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        fig.update_layout(title="not a P x K batch", template="plotly_white", height=420)
        return fig
    codes = np.where(state["positive_mask"], 1, np.where(state["negative_mask"], 2, 0))
    names = np.array(["self", "positive", "negative"])[codes]
    # Heatmaps get nested lists, not 2-D NumPy arrays: plotly sends those as binary 2-D
    # typed arrays, which the FigureWidget in JupyterLab draws as an empty plot.
    colorscale = [[0, "#dddddd"], [1 / 3, "#dddddd"], [1 / 3, viz.POSITIVE_COLOR],
                  [2 / 3, viz.POSITIVE_COLOR], [2 / 3, viz.NEGATIVE_COLOR], [1, viz.NEGATIVE_COLOR]]
    fig.add_trace(go.Heatmap(
        z=codes.tolist(), zmin=-0.5, zmax=2.5, colorscale=colorscale, showscale=False, customdata=names.tolist(),
        xgap=1 if state["B"] <= 64 else 0, ygap=1 if state["B"] <= 64 else 0,
        hovertemplate="anchor %{y}, other %{x}: %{customdata}<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed", title="anchor a", scaleanchor="x", constrain="domain")
    fig.update_xaxes(title="other sample", constrain="domain")
    fig.update_layout(
        title=(f"B={state['B']} = {state['P']} x {state['K']}: green = positive pairs "
               f"({state['positive_pairs']}), red = negative pairs"),
        template="plotly_white", height=520, margin=dict(l=60, r=20, t=60, b=50),
    )
    return fig


def triplet_counts_figure(batch_size=32):
    """Static figure: triplets per batch for every K dividing B (B fixed), 1 < K < B.

    Batch-all enumerates B (K - 1) (B - K) triplets: a parabola in K, zero at
    K = 1 (no positives) and K = B (no negatives), largest at K = (B + 1) / 2
    (for B = 32 the largest divisor there is K = 16); batch-hard keeps B,
    semi-hard B (K - 1). The y axis is logarithmic, labelled at powers of 10.
    """
    ks = [k for k in range(2, batch_size) if batch_size % k == 0]
    counts = [pk_counts(batch_size, k) for k in ks]
    fig = go.Figure()
    for key, name in (("valid_triplets", "all valid triplets: B(K-1)(B-K)"),
                      ("semi_hard_triplets", "semi-hard: B(K-1)"), ("hard_triplets", "hard: B")):
        fig.add_trace(go.Bar(x=[f"K={c['K']} (P={c['P']})" for c in counts], y=[c[key] for c in counts],
                             name=name, text=[f"{c[key]:,}" for c in counts], textposition="outside"))
    top = max(c["valid_triplets"] for c in counts)
    decades = [10 ** e for e in range(0, int(np.ceil(np.log10(top * 3))) + 1)]
    fig.update_yaxes(type="log", title="triplets per batch (log scale)", tickvals=decades,
                     ticktext=[f"{v:,}" for v in decades], range=[0, np.log10(top * 3)])
    fig.update_xaxes(title=f"how B={batch_size} is split: K samples per class (P classes)")
    fig.update_layout(title=f"How many triplets one batch of B={batch_size} offers", barmode="group",
                      template="plotly_white", height=400, margin=dict(l=70, r=20, t=70, b=50))
    return fig


# ------------------------------------------------------------ 2. a real batch
def real_pk_batch(images, labels, classes_per_batch=8, samples_per_class=4, seed=0):
    """The first batch of :func:`course_lib.data.pk_batches`, back as uint8 images.

    Returns ``dict(images=uint8 [P*K, 28, 28], labels=int [P*K], P, K,
    classes=the P classes in batch order)``.
    """
    from course_lib.data import pk_batches

    batch_images, batch_labels = next(iter(pk_batches(images, labels, classes_per_batch,
                                                      samples_per_class, seed=seed, num_batches=1)))
    pixels = np.rint(batch_images.numpy()[..., 0] * 255.0).astype(np.uint8)
    y = batch_labels.numpy()
    _, first = np.unique(y, return_index=True)
    return dict(images=pixels, labels=y, P=classes_per_batch, K=samples_per_class,
                classes=y[np.sort(first)])


def draw_batch(batch, class_names=None, columns=16):
    """The batch as an image grid, titled by class, in batch order."""
    names = [class_names[int(c)] if class_names is not None else str(int(c)) for c in batch["labels"]]
    return viz.image_grid(batch["images"], titles=names, columns=columns, height_per_row=80,
                          title=f"One P x K batch: P={batch['P']} classes x K={batch['K']} images each")


# ------------------------------------------------------ 3. mining on a toy batch
#: A hand-placed 2-D batch: 4 classes x 3 points. Class 0 and class 1 overlap
#: (hard and semi-hard negatives), class 2 sits alone on the right (no negative
#: within any small margin), and class 3 has an outlier, point 9, far from its
#: two class mates (no negative farther than the positive: the fallback).
TOY_POINTS = np.array([
    [0.0, 0.0], [1.0, 0.0], [-0.4, 0.5],      # class 0
    [0.2, 1.25], [-0.9, -0.3], [0.6, 1.9],    # class 1
    [3.2, 0.2], [3.6, -0.4], [3.9, 0.4],      # class 2
    [-1.5, -1.0], [4.6, 2.4], [4.2, 2.9],     # class 3
], dtype=np.float32)
TOY_LABELS = np.repeat(np.arange(4), 3)


#: Euclidean distances [N, N] in NumPy (float64), shared with the other demos (course_lib.viz).
distance_matrix = distances_numpy


def classify_triplets(distances, labels, triplets, margin):
    """Per triplet: D(a, p), D(a, n), loss, active, category and fallback (NumPy).

    Keys ``d_ap``, ``d_an``, ``triplet_losses`` = [D(a, p) - D(a, n) + m]_+,
    ``active`` (loss > 0), ``category``, ``fallback``.

    category: "hard" if D(a, n) < D(a, p), "semi-hard" if D(a, p) <= D(a, n)
    < D(a, p) + m, else "easy". fallback: no negative of a is farther than p
    (then TF Addons' semi-hard rule takes the farthest negative).
    """
    d, y = np.asarray(distances), np.asarray(labels).reshape(-1)
    a, p, n = (np.asarray(t, dtype=int) for t in triplets)
    d_ap, d_an = d[a, p], d[a, n]
    loss = np.maximum(d_ap - d_an + margin, 0.0)
    category = np.where(d_an < d_ap, "hard", np.where(d_an < d_ap + margin, "semi-hard", "easy"))
    neg = y[:, None] != y[None, :]
    farther_exists = np.array([np.any(neg[i] & (d[i] > d[i, j])) for i, j in zip(a, p)], dtype=bool)
    return dict(d_ap=d_ap, d_an=d_an, triplet_losses=loss, active=loss > 0, category=category,
                fallback=~farther_exists)


def mining_state(strategy="semi-hard", margin=0.5, anchor=0, points=None, labels=None):
    """Mine a 2-D batch with :func:`course_lib.mining.mine_triplets` and describe the triplets.

    ``strategy`` is one of :data:`course_lib.mining.STRATEGIES`; "random" is
    no mining, the baseline (seeded by the batch: the same triplets every call).

    ``anchor`` selects the triplets to draw (an index, or "all"). State:
    ``triplets`` (a, p, n arrays for the whole batch), the per-triplet
    arrays of :func:`classify_triplets`, ``shown`` (indices of the drawn
    triplets), ``bands`` ((positive, D(a, p), D(a, p) + m) for the drawn
    anchor), counts ``num_triplets``, ``num_active``, ``num_fallbacks``,
    ``by_category`` and the same for the anchor alone (``anchor_*``), and
    ``loss`` = :func:`course_lib.losses.triplet_loss` on the batch.
    """
    points = TOY_POINTS if points is None else np.asarray(points, dtype=np.float32)
    labels = TOY_LABELS if labels is None else np.asarray(labels)
    triplets = mining.mine_triplets(labels, points, strategy=strategy)
    a, p, n = (t.numpy() for t in triplets)
    d = distance_matrix(points)
    info = classify_triplets(d, labels, (a, p, n), margin)
    if strategy != "semi-hard":
        info["fallback"] = np.zeros(len(a), dtype=bool)
    shown = np.arange(len(a)) if anchor == "all" else np.flatnonzero(a == int(anchor))
    bands = []
    if anchor != "all":
        for j in dict.fromkeys(p[shown].tolist()):
            bands.append((j, float(d[int(anchor), j]), float(d[int(anchor), j] + margin)))
    loss = float(losses.triplet_loss(labels, points, margin=margin, mining=strategy))
    state = dict(
        strategy=strategy, margin=float(margin), anchor=anchor, points=points, labels=labels,
        distances=d, triplets=(a, p, n), shown=shown, bands=bands, loss=loss,
        num_triplets=len(a), num_active=int(info["active"].sum()),
        num_fallbacks=int(info["fallback"].sum()),
        by_category={c: int(np.sum(info["category"] == c)) for c in ("hard", "semi-hard", "easy")},
        anchor_triplets=len(shown), anchor_active=int(info["active"][shown].sum()),
        anchor_fallbacks=int(info["fallback"][shown].sum()),
    )
    state.update(info)
    return state


def mining_readout(state):
    text = (f"{state['strategy']}, m={state['margin']:.2f}: {state['num_triplets']} triplets, "
            f"{state['num_active']} active, {state['num_fallbacks']} fallbacks used, "
            f"loss {state['loss']:.3f}")
    if state["anchor"] != "all":
        text += (f" | anchor {state['anchor']}: {state['anchor_triplets']} triplets, "
                 f"{state['anchor_active']} active, {state['anchor_fallbacks']} fallbacks")
    return text


def draw_mining(state):
    """The toy batch, the drawn triplets (a-p green, a-n red) and the margin band(s)."""
    points, labels = state["points"], state["labels"]
    kind = "random triplets (no mining)" if state["strategy"] == "random" else f"{state['strategy']} mining"
    title = f"{kind}, m = {state['margin']:.2f}"
    if state["anchor"] != "all":
        title += f", anchor {state['anchor']}"
    fig = viz.points_figure(points, labels, title=title, size=12)
    a, p, n = (t[state["shown"]] for t in state["triplets"])
    viz.add_triplets(fig, points, (a, p, n), max_triplets=400, opacity=0.6)
    fig.add_trace(go.Scatter(
        x=points[:, 0], y=points[:, 1], mode="text", text=[str(i) for i in range(len(points))],
        textposition="top right", showlegend=False, hoverinfo="skip", name="index",
    ))
    if state["anchor"] != "all":
        centre = points[int(state["anchor"])]
        fig.add_trace(go.Scatter(x=[centre[0]], y=[centre[1]], mode="markers", name="anchor",
                                 marker=dict(size=20, symbol="circle-open", color="black", line=dict(width=2))))
        for _, inner, outer in state["bands"]:
            viz.add_circle(fig, centre, inner, color=viz.POSITIVE_COLOR, dash="dot", name="D(a,p)")
            viz.add_circle(fig, centre, outer, color="gray", dash="dash", name="D(a,p)+m")
        # Layout shapes have no legend entry: one legend-only line per kind of circle.
        for color, dash, name in ((viz.POSITIVE_COLOR, "dot", "circle: radius D(a, p)"),
                                  ("gray", "dash", "circle: radius D(a, p) + m")):
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=name, hoverinfo="skip",
                                     line=dict(color=color, dash=dash)))
        fallbacks = state["shown"][state["fallback"][state["shown"]]]
        if len(fallbacks):
            ends = points[state["triplets"][2][fallbacks]]
            fig.add_trace(go.Scatter(x=ends[:, 0], y=ends[:, 1], mode="markers", name="fallback negative",
                                     marker=dict(size=22, symbol="x-open", color="black")))
    lo, hi = points.min(axis=0) - 0.8, points.max(axis=0) + 0.8
    if state["anchor"] != "all" and state["bands"]:  # keep every margin circle in view
        reach = max(outer for _, _, outer in state["bands"]) + 0.1
        lo, hi = np.minimum(lo, centre - reach), np.maximum(hi, centre + reach)
    fig.update_xaxes(range=[lo[0], hi[0]])
    fig.update_yaxes(range=[lo[1], hi[1]])
    return fig


def semi_hard_variants(anchor, margin=0.5, points=None, labels=None):
    """What three libraries call "semi-hard", for one anchor of a batch (NumPy, Euclidean).

    * TF Addons (and :mod:`course_lib`): per positive p, the closest negative
      with D(a, n) > D(a, p); when none is farther, the farthest negative.
    * TF Similarity (``negative_mining="semi-hard"``, hard positive): one
      triplet per anchor, its farthest positive p*, then the same rule as TF
      Addons with p*.
    * pytorch-metric-learning (``TripletMarginMiner(type_of_triplets="semihard")``):
      every (p, n) with 0 < D(a, n) - D(a, p) <= m: the FaceNet band, and no
      triplet at all when no negative lies in it.

    Returns a list of ``dict(library, rule, triplets=[(a, p, n), ...])``.
    """
    points = TOY_POINTS if points is None else np.asarray(points)
    labels = TOY_LABELS if labels is None else np.asarray(labels)
    d = distance_matrix(points)
    a = int(anchor)
    positives = [j for j in range(len(labels)) if labels[j] == labels[a] and j != a]
    negatives = np.array([j for j in range(len(labels)) if labels[j] != labels[a]])

    def tfa_negative(p):
        farther = negatives[d[a, negatives] > d[a, p]]
        if len(farther):
            return int(farther[np.argmin(d[a, farther])])
        return int(negatives[np.argmax(d[a, negatives])])

    hardest = max(positives, key=lambda j: d[a, j]) if positives else None
    return [
        dict(library="TF Addons / course_lib", rule="per (a, p): closest n farther than p, else farthest n",
             triplets=[(a, p, tfa_negative(p)) for p in positives] if len(negatives) else []),
        dict(library="TF Similarity", rule="per a: hardest p, then closest n farther than it, else farthest n",
             triplets=[(a, hardest, tfa_negative(hardest))] if positives and len(negatives) else []),
        dict(library="pytorch-metric-learning", rule="every (p, n) with 0 < D(a,n) - D(a,p) <= m",
             triplets=[(a, p, int(n)) for p in positives for n in negatives
                       if 0 < d[a, n] - d[a, p] <= margin]),
    ]


# ------------------------------------------------------ 4. across replicas
#: How :func:`replica_report` lays out the batch before splitting it.
REPLICA_ORDERS = ("class after class", "shuffled")


def replica_report(labels, embeddings, replicas=2, order="class after class", seed=0):
    """What each anchor sees when a global batch is split over ``replicas``: the figure's state.

    The analysis is :func:`course_lib.distributed.per_replica_mining_report`'s:
    ``report`` holds its numbers, and its per-anchor arrays are the state's own
    keys (``replica``, the masks ``positive`` / ``negative`` / ``same_replica``,
    ``negatives_global`` / ``negatives_per_replica``, ``positives_global`` /
    ``positives_per_replica``, ``hardest_negative``,
    ``hardest_negative_elsewhere``, ...). This function adds only what the
    widget needs: ``order="shuffled"`` permutes the rows first (``seed``),
    ``valid`` / ``message`` when B is not a multiple of R (a message to draw
    instead of an error), and the counts of anchors left without a positive /
    a negative on their replica (``anchors_without_positive`` /
    ``anchors_without_negative``).
    """
    y = np.asarray(labels).reshape(-1)
    x = np.asarray(embeddings, dtype=np.float32).reshape(len(y), -1)
    b, r = len(y), int(replicas)
    if order not in REPLICA_ORDERS:
        raise ValueError(f"Unknown order={order!r}: expected one of {REPLICA_ORDERS}.")
    state = dict(B=b, replicas=r, order=order, valid=False, message="")
    if r < 1 or b % r:
        state["message"] = f"B={b} is not a multiple of R={r} replicas: tf.distribute needs equal slices."
        return state
    if order == "shuffled":
        perm = np.random.default_rng(seed).permutation(b)
        y, x = y[perm], x[perm]
    report = distributed.per_replica_mining_report(y, x, r)
    per_anchor = report.pop("per_anchor")
    state.update(per_anchor, valid=True, labels=y, report=report,
                 anchors_without_positive=int(np.sum(per_anchor["positives_per_replica"] == 0)),
                 anchors_without_negative=int(np.sum(per_anchor["negatives_per_replica"] == 0)))
    return state


def replica_readout(state):
    if not state["valid"]:
        return f"invalid split: {state['message']}"
    report = state["report"]
    return (
        f"R={state['replicas']} replicas of {state['B'] // state['replicas']}: negatives per anchor "
        f"{report['negatives_per_replica']:.1f} in-replica vs {report['negatives_global']:.1f} global; "
        f"globally hardest negative on another replica for "
        f"{100 * report['hardest_negative_elsewhere']:.0f}% of anchors; "
        f"{state['anchors_without_positive']} anchors lost all their positives"
    )


#: The pair codes of :func:`draw_replicas`: (name, colour); dark = same replica, pale = another.
REPLICA_PAIR_CODES = (
    ("self", "#dddddd"),
    ("positive, same replica", viz.POSITIVE_COLOR),
    ("negative, same replica", viz.NEGATIVE_COLOR),
    ("positive, other replica", "#b8e0b8"),
    ("negative, other replica", "#f4c7c7"),
)


def draw_replicas(state):
    """Left: the B x B pairs by replica; right: negatives per anchor, global vs in-replica.

    Traces: the heatmap, the x of each anchor's globally hardest negative,
    the two bar series, then one legend-only square per pair colour.
    """
    if not state["valid"]:  # only the message: no empty panels
        fig = go.Figure()
        fig.add_annotation(text=state["message"], showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                           font=dict(size=14, color=viz.NEGATIVE_COLOR))
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        fig.update_layout(template="plotly_white", height=470)
        return fig
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.1,
                        subplot_titles=("pairs, by the replica that holds them", "negatives per anchor"))
    pos, neg, same = state["positive"], state["negative"], state["same_replica"]
    codes = np.select([pos & same, neg & same, pos & ~same, neg & ~same], [1, 2, 3, 4], 0)
    names = np.array([name for name, _ in REPLICA_PAIR_CODES])[codes]
    scale = []
    for i, (_, color) in enumerate(REPLICA_PAIR_CODES):
        scale += [[i / 5, color], [(i + 1) / 5, color]]
    fig.add_trace(go.Heatmap(z=codes.tolist(), zmin=-0.5, zmax=4.5, colorscale=scale, showscale=False,
                             customdata=names.tolist(), hovertemplate="anchor %{y}, %{x}: %{customdata}<extra></extra>"),
                  row=1, col=1)
    b, anchors = state["B"], np.flatnonzero(state["hardest_negative"] >= 0)
    fig.add_trace(go.Scatter(x=state["hardest_negative"][anchors], y=anchors, mode="markers",
                             name="x: globally hardest negative", marker=dict(symbol="x", size=6, color="black")),
                  row=1, col=1)
    fig.add_trace(go.Bar(x=np.arange(b), y=state["negatives_global"], name="negatives in the global batch",
                         marker_color="#bbbbbb"), row=1, col=2)
    fig.add_trace(go.Bar(x=np.arange(b), y=state["negatives_per_replica"], name="negatives in its replica",
                         marker_color=viz.NEGATIVE_COLOR), row=1, col=2)
    for name, color in REPLICA_PAIR_CODES[1:]:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, hoverinfo="skip",
                                 marker=dict(symbol="square", size=12, color=color)), row=1, col=1)
    fig.update_yaxes(autorange="reversed", row=1, col=1, title="anchor")
    fig.update_xaxes(title="other sample", row=1, col=1)
    fig.update_xaxes(title="anchor", row=1, col=2)
    fig.update_layout(barmode="overlay", template="plotly_white", height=500,
                      title=dict(text=f"{state['replicas']} replica(s) of {b // state['replicas']}, "
                                      f"batch {state['order']}", y=0.98, yanchor="top"),
                      margin=dict(l=50, r=20, t=100, b=40))
    return fig


def replica_sweep(labels, embeddings, replica_counts=(1, 2, 4, 8), order="class after class"):
    """:func:`replica_report` for several R: one row of its ``report`` per valid R (for a table).

    Short column names, so the table fits a notebook cell: negatives per
    anchor in the replica and in the global batch, shares of anchors whose
    hardest (pairs whose semi-hard) negative sits on another replica, the
    ``missed_gap`` and the anchors left without a positive.
    """
    rows = []
    for r in replica_counts:
        s = replica_report(labels, embeddings, r, order)
        if s["valid"]:
            report = s["report"]
            rows.append({"R": r, "neg. in replica": report["negatives_per_replica"],
                         "neg. global": report["negatives_global"],
                         "hardest elsewhere": report["hardest_negative_elsewhere"],
                         "semi-hard elsewhere": report["semi_hard_negative_elsewhere"],
                         "missed gap": report["missed_gap"], "no positive": s["anchors_without_positive"]})
    return rows
