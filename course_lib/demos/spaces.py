"""Looking at embedding spaces in 2-D and 3-D: lessons 01 and 06.

A space is an [N, D] array of embeddings of N items (raw pixels: D = 784;
a learned embedding: D = 64). To look at it, squeeze it to 2 or 3
coordinates with :func:`course_lib.projection.project`:

* PCA: centre the points, X = U S V^T, keep the first columns of U S: the
  linear view that keeps the most variance. The share it keeps,
  sum_{i <= dim} s_i^2 / sum_i s_i^2, says how faithful the picture is
  (:func:`explained_variance`).
* UMAP: keeps each point's nearest neighbours near; clusters show clearly,
  distances between clusters mean little. Its first call compiles code with
  numba (10 s or more on a laptop CPU).

How many directions a space really uses: :func:`variance_spectrum` gives
the share of the variance along each principal direction, s_i^2 / sum_j s_j^2,
:func:`directions_needed` the fewest directions that hold a given share
(90%), and :func:`draw_spectrum` draws the cumulative shares of several
spaces (lesson 06: a loss that only has to separate C classes can put them
at the corners of a simplex, which spans C - 1 directions).

Widgets (``compute(**controls) -> state``, ``draw(state) -> go.Figure``):

* :func:`compute` / :func:`draw`: one space, projected by ``method`` to ``dim``
  coordinates, one trace per class (click the legend to hide a class);
* :func:`inspect` / :func:`draw_inspect`: the same plot with one selected
  point ringed and its image beside the plot; :func:`follow_hover` makes
  hovering over a point select it.

Projections are the slow part: pass the same ``cache`` dict to every call,
and moving a point slider does not project again.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from course_lib import projection, viz

__all__ = ["variance_spectrum", "explained_variance", "directions_needed", "draw_spectrum", "project_cached", "compute", "draw", "readout", "draw_side_by_side",
           "inspect", "draw_inspect", "readout_inspect", "follow_hover"]

SELECTED_COLOR = "black"


def variance_spectrum(x):
    """Share of the total variance along each principal direction, largest first.

    With the singular values s_i of the centred data X [N, D]: the array
    s_i^2 / sum_j s_j^2, of length min(N, D); it sums to 1 (all zeros for
    points that do not vary). The s_i^2 are the eigenvalues of X^T X (or of
    X X^T, whichever is smaller), cheaper to get than a singular value
    decomposition.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"`x` must be an [N, D] array with N >= 1, got shape {x.shape}.")
    centred = x - x.mean(axis=0)
    gram = centred.T @ centred if centred.shape[1] <= centred.shape[0] else centred @ centred.T
    eigenvalues = np.clip(np.linalg.eigvalsh(gram)[::-1], 0.0, None)  # s_i^2, largest first
    total = np.sum(eigenvalues)
    return eigenvalues / total if total > 0 else np.zeros_like(eigenvalues)


def explained_variance(x, dim):
    """Share of the total variance kept by the first ``dim`` principal directions.

    sum_{i<=dim} s_i^2 / sum_i s_i^2 (:func:`variance_spectrum`); 0 for points that do not vary.
    """
    return float(np.sum(variance_spectrum(x)[:dim]))


def directions_needed(x, share=0.9):
    """The fewest principal directions that hold ``share`` of the variance of ``x``.

    The smallest k with sum_{i<=k} s_i^2 / sum_i s_i^2 >= share; 0 for points
    that do not vary. ``share`` in (0, 1].
    """
    if not 0 < share <= 1:
        raise ValueError(f"`share` must lie in (0, 1], got {share!r}.")
    cumulative = np.cumsum(variance_spectrum(x))
    if cumulative[-1] == 0:
        return 0
    # 1e-9: a share of exactly 1 is reached despite rounding in the last digits
    return int(np.searchsorted(cumulative, share - 1e-9) + 1)


def draw_spectrum(spaces, share=0.9, max_directions=40, title=None):
    """Cumulative share of the variance against the number of principal directions, one line per space.

    ``spaces`` maps a name to an [N, D] array. A dashed line marks ``share``;
    each legend entry says how many directions reach it (:func:`directions_needed`).
    """
    fig = go.Figure()
    for i, (name, x) in enumerate(spaces.items()):
        cumulative = np.cumsum(variance_spectrum(x))[:max_directions]
        needed = directions_needed(x, share)
        fig.add_trace(go.Scatter(
            x=np.arange(1, len(cumulative) + 1), y=cumulative, mode="lines+markers", marker_size=4,
            name=f"{name}: {needed} directions hold {share:.0%}",
            line=dict(color=viz.CLASS_COLORS[i % len(viz.CLASS_COLORS)]),
            hovertemplate="%{x} directions: %{y:.1%}<extra>" + name + "</extra>"))
    fig.add_hline(y=share, line=dict(color="gray", dash="dash"))
    fig.update_layout(title=title or "Share of the variance held by the first k principal directions",
                      template="plotly_white", height=420,
                      xaxis=dict(title="k, principal directions (largest first)"),
                      yaxis=dict(title="share of the variance", range=[0, 1.02], tickformat=".0%"),
                      legend=dict(x=0.45, y=0.05), margin=dict(l=60, r=20, t=60, b=50))
    return fig


def project_cached(x, method, dim, seed=0, cache=None, key=None):
    """:func:`course_lib.projection.project`, memoised in ``cache`` under ``(key, method, dim, seed)``.

    PCA coordinates in 2-D are the first two columns of those in 3-D (the same
    principal directions, with the same signs), so with a cache one PCA in 3-D
    serves both views.
    """
    if cache is None:
        return projection.project(x, method=method, dim=dim, seed=seed)
    if method == "pca" and dim < 3 <= min(x.shape[1], len(x) - 2):
        return project_cached(x, method, 3, seed, cache, key)[:, :dim]
    entry = (key, method, dim, seed)
    if entry not in cache:
        cache[entry] = projection.project(x, method=method, dim=dim, seed=seed)
    return cache[entry]


def compute(space, dim=2, method="pca", *, spaces, labels, class_names=None, seed=0, cache=None):
    """Project ``spaces[space]`` to ``dim`` coordinates: state for :func:`draw`.

    Returns ``{"space", "dim", "method", "coords" [N, dim], "labels" [N],
    "class_names", "explained"}`` where ``explained`` is the PCA share of variance kept
    (:func:`explained_variance`; also given for UMAP, as a reference).
    """
    if space not in spaces:
        raise ValueError(f"Unknown space={space!r}: expected one of {', '.join(map(repr, spaces))}.")
    x = np.asarray(spaces[space], dtype=np.float32)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(x):
        raise ValueError(f"{len(labels)} labels for {len(x)} points in space {space!r}.")
    coords = project_cached(x, method, int(dim), seed, cache, key=space)
    if cache is not None:
        variance_key = (space, "explained", int(dim), None)
        if variance_key not in cache:
            cache[variance_key] = explained_variance(x, int(dim))
        explained = cache[variance_key]
    else:
        explained = explained_variance(x, int(dim))
    return {"space": space, "dim": int(dim), "method": method, "coords": coords,
            "labels": labels, "class_names": class_names, "explained": explained,
            "input_dim": x.shape[1]}


def readout(state):
    text = (f"{state['space']}: {len(state['coords'])} points, {state['input_dim']}-d "
            f"-> {state['method'].upper()} {state['dim']}-d")
    return text + f"; the first {state['dim']} principal directions hold {state['explained']:.0%} of the variance"


def _title(state):
    return f"{state['space']} ({state['input_dim']}-d), {state['method'].upper()} to {state['dim']}-d"


def draw(state, class_names=None):
    """The projected points, one trace per class (:func:`course_lib.projection.embedding_figure`)."""
    class_names = class_names if class_names is not None else state.get("class_names")
    fig = projection.embedding_figure(state["coords"], state["labels"], class_names, title=_title(state))
    for trace in fig.data:  # the course's class colours, the same in every figure
        trace.marker.color = viz.class_color(_label_of(trace, state["labels"]))
    fig.update_layout(width=None, height=560 if state["dim"] == 3 else 520)
    return fig


def _label_of(trace, labels):
    return int(labels[int(trace.customdata[0])])


def draw_side_by_side(states, class_names=None, height=430):
    """Static 2-D views of several spaces next to each other, one shared class legend."""
    fig = make_subplots(rows=1, cols=len(states), subplot_titles=[_title(s) for s in states],
                        horizontal_spacing=0.06)
    for col, state in enumerate(states, start=1):
        if state["dim"] != 2:
            raise ValueError("draw_side_by_side draws 2-D projections only.")
        single = draw(state, class_names)
        for trace in single.data:
            trace.update(legendgroup=trace.name, showlegend=col == 1, marker_size=4)
            fig.add_trace(trace, row=1, col=col)
        fig.update_yaxes(scaleanchor=f"x{'' if col == 1 else col}", scaleratio=1, row=1, col=col)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(template="plotly_white", height=height, legend_title_text="class",
                      margin=dict(l=20, r=20, t=60, b=20))
    return fig


# ---------------------------------------------------------------------------
# a selected point and its image beside the plot
# ---------------------------------------------------------------------------
def inspect(point, space, dim=2, method="pca", *, spaces, labels, images, class_names=None, seed=0,
            cache=None):
    """:func:`compute` plus one selected point (``point``: its index in the N items).

    Adds ``point``, its ``image`` and ``label``, and ``nearest``: the index of
    its nearest neighbour in the full space (Euclidean), with ``nearest_label``.
    """
    state = compute(space, dim, method, spaces=spaces, labels=labels, class_names=class_names,
                    seed=seed, cache=cache)
    point = int(point)
    if not 0 <= point < len(state["labels"]):
        raise ValueError(f"`point` must lie in 0..{len(state['labels']) - 1}, got {point}.")
    # Its nearest neighbour in the full space (not in the picture): is it of the same class?
    x = np.asarray(spaces[space], dtype=np.float32)
    d = np.sum((x - x[point]) ** 2, axis=1)
    d[point] = np.inf
    state.update(point=point, image=np.asarray(images)[point], label=int(state["labels"][point]),
                 nearest=int(np.argmin(d)))
    state["nearest_label"] = int(state["labels"][state["nearest"]])
    return state


def readout_inspect(state, class_names=None):
    class_names = class_names if class_names is not None else state.get("class_names")
    name = class_names[state["label"]] if class_names is not None else str(state["label"])
    other = class_names[state["nearest_label"]] if class_names is not None else str(state["nearest_label"])
    verdict = "same class" if state["nearest_label"] == state["label"] else "another class"
    return (f"point #{state['point']}: {name}; its nearest neighbour in the full {state['input_dim']}-d "
            f"space is #{state['nearest']}: {other} ({verdict})")


def draw_inspect(state, class_names=None):
    """Left: the projection with the selected point ringed. Right: the point's image."""
    class_names = class_names if class_names is not None else state.get("class_names")
    scene = state["dim"] == 3
    name = class_names[state["label"]] if class_names is not None else str(state["label"])
    fig = make_subplots(rows=1, cols=2, column_widths=[0.74, 0.26], horizontal_spacing=0.04,
                        specs=[[{"type": "scene" if scene else "xy"}, {"type": "xy"}]],
                        subplot_titles=[_title(state), f"#{state['point']}: {name}"])
    for trace in draw(state, class_names).data:
        fig.add_trace(trace, row=1, col=1)
    xyz = state["coords"][state["point"]]
    ring = dict(size=16 if not scene else 9, color="rgba(0,0,0,0)",
                line=dict(color=SELECTED_COLOR, width=3))
    if scene:
        marker = go.Scatter3d(x=[xyz[0]], y=[xyz[1]], z=[xyz[2]], mode="markers", marker=ring)
    else:
        marker = go.Scatter(x=[xyz[0]], y=[xyz[1]], mode="markers", marker=ring)
    marker.update(name=f"selected: #{state['point']}", hoverinfo="skip")
    fig.add_trace(marker, row=1, col=1)
    rgb = np.repeat(255 - state["image"][..., None], 3, axis=-1)  # dark ink on white
    fig.add_trace(go.Image(z=rgb, hoverinfo="skip", name="image"), row=1, col=2)
    fig.update_xaxes(visible=False, row=1, col=2)
    fig.update_yaxes(visible=False, row=1, col=2)
    if not scene:
        fig.update_yaxes(scaleanchor="x", scaleratio=1, row=1, col=1)
    fig.update_layout(template="plotly_white", height=560 if scene else 520, legend_title_text="class",
                      margin=dict(l=20, r=20, t=60, b=20))
    return fig


def follow_hover(demo, control="point"):
    """Hovering over a point of ``demo.figure`` selects it: sets ``demo.controls[control]``.

    ``demo`` is a :class:`course_lib.widgets.Interactive` built on
    :func:`inspect`/:func:`draw_inspect`. Every redraw replaces the traces,
    so the hover callbacks are attached again after each update. Hover
    events come from the browser: they work in JupyterLab, not in a script.
    Returns ``demo``.
    """
    slider = demo.controls[control]

    def select(trace, points, state):
        if points.point_inds:
            slider.value = int(trace.customdata[points.point_inds[0]])

    def attach(change=None):
        for trace in demo.figure.data:
            if trace.type in ("scatter", "scatter3d") and trace.customdata is not None:
                trace.on_hover(select)

    attach()
    for widget in demo.controls.values():  # registered after Interactive.update: runs after it
        widget.observe(attach, names="value")
    return demo
