"""N-pairs loss (Sohn 2016): the pure functions behind lesson 07.

Multi-class N-pair loss. From a batch, take one (anchor, positive) pair per
class: anchor a_i = the class's 1st sample in batch order, positive p_i = its
2nd (classes with fewer than 2 samples are ignored, later samples unused).
With N pairs and the N x N similarity matrix of dot products

    S = A P^T,        S[i, j] = a_i . p_j,

row i is a softmax classification problem whose right answer is column i:

    L_i = -log softmax(S[i])_i = log(1 + sum_{j != i} exp(S[i, j] - S[i, i]))

so every other class's positive is a negative for a_i: the (N+1)-tuplet loss
with N-1 negatives at once (N = 2 is the soft-margin triplet loss written in
dot products). The loss is the mean over the N pairs plus an L2 term

    L = mean_i L_i + l2_reg * 0.25 * (mean_i ||a_i||^2 + mean_i ||p_i||^2),

without which the logits, hence the embeddings' norms, grow without bound:
scaling a separable embedding by s > 1 always lowers the cross-entropy.
Fewer than 2 pairs: no negative to compare with, the loss is 0.

``compute(scale, anchor, l2_reg) -> state`` and ``draw(state) -> go.Figure``
drive the lesson's widget; :func:`npairs_numpy` is the NumPy reference that
the lesson compares with :func:`course_lib.losses.npairs_loss`.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from course_lib.viz import NEGATIVE_COLOR, POSITIVE_COLOR, class_color

__all__ = [
    "select_pairs", "npairs_numpy", "tuplet_loss", "toy_batch", "scale_sweep",
    "compute", "draw", "readout", "draw_pair_selection", "draw_scale_sweep",
    "embedding_norms", "npairs_gradient", "descend", "draw_descent", "TOY_LABELS", "TOY_EMBEDDINGS",
]


# ------------------------------------------------------------------ formulas
def select_pairs(labels):
    """``(anchors, positives)``: int64 index arrays, one pair per class with >= 2 samples.

    anchor = 1st, positive = 2nd occurrence of the class in batch order; the
    pairs come in the order of their anchors in the batch (= the order in
    which the classes first appear). Keras' (B, 1) labels are accepted.
    """
    labels = np.asarray(labels).reshape(-1)
    first, second = {}, {}
    for i, y in enumerate(labels.tolist()):
        if y not in first:
            first[y] = i
        elif y not in second:
            second[y] = i
    anchors = sorted(first[y] for y in second)
    positives = [second[labels[a].item()] for a in anchors]
    return np.array(anchors, dtype=np.int64), np.array(positives, dtype=np.int64)


def _log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _row_cross_entropy(s):
    """-log softmax(S[i])_i = log(1 + sum_{j != i} exp(S[i, j] - S[i, i])), accurate near 0."""
    gaps = s - np.diag(s)[:, None]
    np.fill_diagonal(gaps, -np.inf)
    top = np.maximum(gaps.max(axis=1), 0.0)
    rest = np.exp(gaps - top[:, None]).sum(axis=1)
    return np.where(top > 0, top + np.log(np.exp(-top) + rest), np.log1p(rest))


def npairs_numpy(labels, embeddings, l2_reg=0.002):
    """The multi-class N-pair loss in NumPy (float64), with its pieces.

    Returns a dict:
      ``anchors``, ``positives`` (batch indices), ``pair_labels`` (class of each pair),
      ``similarity`` S [N, N] = A P^T, ``probabilities`` = softmax of each row,
      ``cross_entropy`` [N] = -log softmax(S[i])_i, ``mean_cross_entropy``,
      ``l2_term`` = l2_reg * 0.25 * (mean ||a||^2 + mean ||p||^2),
      ``loss`` = mean_cross_entropy + l2_term (0 when N < 2), ``num_pairs`` N.
    """
    labels = np.asarray(labels).reshape(-1)
    x = np.asarray(embeddings, dtype=np.float64)
    anchors, positives = select_pairs(labels)
    a, p = x[anchors], x[positives]
    s = a @ p.T
    n = len(anchors)
    if n:
        log_probs = _log_softmax(s)
        cross_entropy = _row_cross_entropy(s) if n >= 2 else -np.diag(log_probs)
        probabilities = np.exp(log_probs)
        l2_term = l2_reg * 0.25 * (np.mean(np.sum(a**2, 1)) + np.mean(np.sum(p**2, 1)))
    else:
        cross_entropy, probabilities, l2_term = np.zeros(0), np.zeros((0, 0)), 0.0
    mean_ce = float(cross_entropy.mean()) if n >= 2 else 0.0
    return {
        "anchors": anchors, "positives": positives, "pair_labels": labels[anchors],
        "similarity": s, "probabilities": probabilities, "cross_entropy": cross_entropy,
        "mean_cross_entropy": mean_ce, "l2_term": float(l2_term) if n >= 2 else 0.0,
        "loss": mean_ce + float(l2_term) if n >= 2 else 0.0, "num_pairs": n,
    }


def tuplet_loss(anchor, positive, negatives):
    """Sohn's (N+1)-tuplet loss of one anchor: log(1 + sum_n exp(a.n - a.p)).

    With one negative it is softplus(a.n - a.p), a soft-margin triplet loss in
    dot products; row i of the N-pair loss is this with the other classes'
    positives as ``negatives``.
    """
    a = np.asarray(anchor, dtype=np.float64)
    gaps = np.atleast_2d(np.asarray(negatives, dtype=np.float64)) @ a - a @ np.asarray(positive, np.float64)
    top = max(0.0, gaps.max())
    return float(top + np.log(np.exp(-top) + np.exp(gaps - top).sum()))


def embedding_norms(embeddings):
    """L2 norm of every row (for watching the norms grow during training)."""
    return np.linalg.norm(np.asarray(embeddings, dtype=np.float64), axis=1)


# ------------------------------------------------------------------ toy data
def toy_batch(num_classes=6, dim=8, noise=0.2, seed=0):
    """A small batch in batch order that exercises every rule of the pair selection.

    Classes 0..num_classes-1 get 2 or 3 samples (a third one is unused), and
    one extra class (id ``num_classes``) has a single sample (ignored). Each
    sample is its class centre (a random unit vector) plus noise, normalised
    to unit length, so ``scale`` alone sets the norms.

    Returns ``(labels int64 [B], embeddings float64 [B, dim])``.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes + 1, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    counts = [3 if c % 2 == 0 else 2 for c in range(num_classes)] + [1]
    labels = rng.permutation(np.repeat(np.arange(num_classes + 1), counts))
    x = centres[labels] + noise * rng.normal(size=(len(labels), dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return labels.astype(np.int64), x


#: The lesson's toy batch: 16 unit vectors in 8-D, 6 pairs, every own positive winning its row.
TOY_LABELS, TOY_EMBEDDINGS = toy_batch()


def scale_sweep(labels, embeddings, scales, l2_reg=0.002):
    """Loss pieces of ``scale * embeddings`` for each scale: the L2 term's reason to be.

    Returns arrays ``scales``, ``cross_entropy``, ``l2_term``, ``loss`` and the
    ``best_scale`` (lowest total loss among ``scales``). With ``l2_reg = 0`` and
    a batch where every anchor's own positive wins its row, the cross-entropy
    keeps falling as the scale grows: the optimum is at infinity.
    """
    scales = np.asarray(scales, dtype=np.float64)
    rows = [npairs_numpy(labels, s * np.asarray(embeddings, np.float64), l2_reg) for s in scales]
    ce = np.array([r["mean_cross_entropy"] for r in rows])
    l2 = np.array([r["l2_term"] for r in rows])
    total = ce + l2
    return {"scales": scales, "cross_entropy": ce, "l2_term": l2, "loss": total,
            "best_scale": float(scales[np.argmin(total)]), "l2_reg": float(l2_reg)}


def npairs_gradient(labels, embeddings, l2_reg=0.002):
    """``(loss, gradient)`` of :func:`npairs_numpy` w.r.t. the embeddings [B, D].

    With G = (softmax(S) - I) / N, the cross-entropy's gradient is G P for
    the anchors and G^T A for the positives; the L2 term adds
    l2_reg * 0.5 * x / N to each of them. Unused samples get 0.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    state = npairs_numpy(labels, x, l2_reg)
    grad = np.zeros_like(x)
    n = state["num_pairs"]
    if n < 2:
        return state["loss"], grad
    anchors, positives = state["anchors"], state["positives"]
    g = (state["probabilities"] - np.eye(n)) / n
    grad[anchors] = g @ x[positives] + l2_reg * 0.5 * x[anchors] / n
    grad[positives] = g.T @ x[anchors] + l2_reg * 0.5 * x[positives] / n
    return state["loss"], grad


def descend(labels, embeddings, l2_reg=0.002, steps=2000, learning_rate=0.01, record_every=20,
            optimizer="adam"):
    """Train *free* embeddings (no network) on the N-pair loss: how big do the norms get?

    ``optimizer``: ``"adam"`` (Kingma & Ba's update with the usual betas 0.9 and
    0.999, as the networks of the course are trained) or ``"sgd"`` (plain
    gradient descent). Returns ``steps`` (recorded step numbers), ``mean_norm``, ``loss`` and
    ``cross_entropy`` at those steps, and the final ``embeddings``. Without
    the L2 term (``l2_reg = 0``) the norms never stop growing once every pair
    wins its row: a larger scale always means a lower cross-entropy.
    """
    labels = np.asarray(labels).reshape(-1)
    x = np.array(embeddings, dtype=np.float64)
    used = np.concatenate(select_pairs(labels))
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    record = {"steps": [], "mean_norm": [], "loss": [], "cross_entropy": []}
    m, v = np.zeros_like(x), np.zeros_like(x)
    for step in range(steps + 1):
        loss, grad = npairs_gradient(labels, x, l2_reg)
        if step % record_every == 0:
            record["steps"].append(step)
            record["mean_norm"].append(float(embedding_norms(x[used]).mean()))
            record["loss"].append(loss)
            record["cross_entropy"].append(npairs_numpy(labels, x, l2_reg)["mean_cross_entropy"])
        if optimizer == "sgd":
            x -= learning_rate * grad
        elif step < steps:
            m = 0.9 * m + 0.1 * grad
            v = 0.999 * v + 0.001 * grad**2
            m_hat, v_hat = m / (1 - 0.9 ** (step + 1)), v / (1 - 0.999 ** (step + 1))
            x -= learning_rate * m_hat / (np.sqrt(v_hat) + 1e-7)
    record = {key: np.asarray(values) for key, values in record.items()}
    record.update(embeddings=x, l2_reg=float(l2_reg))
    return record


def draw_descent(*runs):
    """Mean norm of the used embeddings against the step, one line per run (its l2_reg)."""
    fig = go.Figure()
    for run in runs:
        fig.add_trace(go.Scatter(x=run["steps"], y=run["mean_norm"], name=f"l2_reg = {run['l2_reg']:g}"))
    fig.update_layout(template="plotly_white", height=340, margin=dict(l=40, r=20, t=60, b=40),
                      title="Free embeddings under gradient descent: the norms",
                      xaxis_title="step", yaxis_title="mean ||x||")
    return fig


# ------------------------------------------------------------------ widget
def compute(scale=1.0, anchor=0, l2_reg=0.002, labels=None, embeddings=None):
    """State of the widget: the N-pair loss of ``scale * embeddings`` seen from one anchor.

    ``anchor`` is the pair index i (row of S), clipped to the pairs present.
    Adds to :func:`npairs_numpy`'s dict: ``scale``, ``anchor``, ``row``
    (S[i]), ``row_probabilities``, ``target_probability`` (softmax(S[i])_i),
    ``mean_norm`` (mean norm of the anchors and positives) and ``labels``.
    """
    labels = TOY_LABELS if labels is None else np.asarray(labels).reshape(-1)
    embeddings = TOY_EMBEDDINGS if embeddings is None else np.asarray(embeddings, np.float64)
    state = npairs_numpy(labels, scale * embeddings, l2_reg)
    n = state["num_pairs"]
    i = int(np.clip(anchor, 0, max(n - 1, 0)))
    used = np.concatenate([state["anchors"], state["positives"]])
    state.update(
        scale=float(scale), l2_reg=float(l2_reg), anchor=i, labels=labels,
        row=state["similarity"][i] if n else np.zeros(0),
        row_probabilities=state["probabilities"][i] if n else np.zeros(0),
        target_probability=float(state["probabilities"][i, i]) if n else float("nan"),
        mean_norm=float(embedding_norms(scale * embeddings[used]).mean()) if n else 0.0,
    )
    return state


def readout(state):
    """One line: pairs, the loss and its two parts, the target's probability."""
    return (f"pairs N = {state['num_pairs']} · loss {state['loss']:.3f} = cross-entropy "
            f"{state['mean_cross_entropy']:.3f} + L2 {state['l2_term']:.3f} · "
            f"p(own positive | anchor {state['anchor']}) = {state['target_probability']:.3f} · "
            f"mean norm {state['mean_norm']:.2f}")


def _pair_names(state):
    return [f"{i} (class {y})" for i, y in enumerate(state["pair_labels"].tolist())]


def draw(state):
    """Left: heatmap of S = A P^T, the selected anchor's row boxed; right: that row's softmax.

    The target column (the anchor's own positive) is green, the negatives red.
    Traces: ``[heatmap, bars]``.
    """
    names = _pair_names(state)
    i, n = state["anchor"], state["num_pairs"]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.16,
                        subplot_titles=("similarity S[i, j] = a<sub>i</sub> · p<sub>j</sub>",
                                        f"softmax of row {i}: p(j | anchor {i})"))
    s = state["similarity"]
    fig.add_trace(go.Heatmap(
        z=s, x=[f"p{j}" for j in range(n)], y=[f"a{j}" for j in range(n)], colorscale="RdBu",
        zmid=0, colorbar=dict(x=0.47, len=0.9, title="a·p"), text=np.round(s, 2),
        texttemplate="%{text}", hovertemplate="a%{y} · p%{x} = %{z:.3f}<extra></extra>",
        name="similarity"), row=1, col=1)
    if n:
        fig.add_shape(type="rect", x0=-0.5, x1=n - 0.5, y0=i - 0.5, y1=i + 0.5,
                      line=dict(color="black", width=3), row=1, col=1)
    colors = [POSITIVE_COLOR if j == i else NEGATIVE_COLOR for j in range(n)]
    fig.add_trace(go.Bar(x=[f"p{j}" for j in range(n)], y=state["row_probabilities"],
                         marker_color=colors, name="softmax", customdata=names,
                         hovertemplate="p(%{x} | anchor) = %{y:.3f}<extra>%{customdata}</extra>"),
                  row=1, col=2)
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_yaxes(range=[0, 1], row=1, col=2)  # the subplot title names it: no axis title by the colour bar
    fig.update_layout(template="plotly_white", height=420, showlegend=False,
                      margin=dict(l=40, r=20, t=70, b=40),
                      title=f"scale {state['scale']:g}, l2_reg {state['l2_reg']:g}: "
                            f"loss {state['loss']:.3f} (CE {state['mean_cross_entropy']:.3f} "
                            f"+ L2 {state['l2_term']:.3f})")
    return fig


def draw_pair_selection(labels):
    """The batch in order, one marker per sample: anchors, positives, unused, ignored.

    Traces: one per role (``anchor``, ``positive``, ``unused (3rd+)``,
    ``ignored (single)``), in that order, always present.
    """
    labels = np.asarray(labels).reshape(-1)
    anchors, positives = select_pairs(labels)
    values, counts = np.unique(labels, return_counts=True)
    single = set(values[counts == 1].tolist())
    role = np.array(["unused (3rd+)"] * len(labels), dtype=object)
    role[anchors], role[positives] = "anchor", "positive"
    role[[i for i, y in enumerate(labels.tolist()) if y in single]] = "ignored (single)"
    symbols = {"anchor": "circle", "positive": "diamond", "unused (3rd+)": "x-thin-open",
               "ignored (single)": "circle-open"}
    fig = go.Figure()
    for name, symbol in symbols.items():
        rows = np.flatnonzero(role == name)
        fig.add_trace(go.Scatter(
            x=rows, y=labels[rows], mode="markers+text", name=name, text=[str(r) for r in rows],
            textposition="top center",
            marker=dict(symbol=symbol, size=16, line=dict(width=2, color=[class_color(y) for y in labels[rows]]),
                        color=[class_color(y) for y in labels[rows]])))
    fig.update_layout(template="plotly_white", height=300, margin=dict(l=40, r=20, t=50, b=40),
                      title=f"{len(anchors)} pairs from a batch of {len(labels)}",
                      xaxis_title="position in the batch", yaxis_title="class")
    fig.update_yaxes(dtick=1)
    return fig


def draw_scale_sweep(*sweeps):
    """Loss against the embedding scale, one panel per sweep (e.g. l2_reg = 0 and > 0).

    Traces per panel: cross-entropy, L2 term, total loss.
    """
    fig = make_subplots(rows=1, cols=len(sweeps), shared_yaxes=True,
                        subplot_titles=[f"l2_reg = {s['l2_reg']:g}" for s in sweeps])
    for col, sweep in enumerate(sweeps, start=1):
        for key, color, dash in (("cross_entropy", "#1f77b4", "dot"), ("l2_term", "#7f7f7f", "dash"),
                                 ("loss", "black", "solid")):
            fig.add_trace(go.Scatter(x=sweep["scales"], y=sweep[key], name=key.replace("_", " "),
                                     legendgroup=key, showlegend=col == 1,
                                     line=dict(color=color, dash=dash)), row=1, col=col)
    fig.update_xaxes(title_text="embedding scale s (norm of every vector)", type="log")
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_layout(template="plotly_white", height=360, margin=dict(l=40, r=20, t=60, b=40))
    return fig
