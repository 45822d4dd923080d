"""Plotly drawing primitives shared by the lessons' figures.

Pure functions: data in, ``go.Figure`` out. The lesson-specific pictures
(``course_lib.demos``) and the command line build on them; embedding
scatter plots of real data live in :mod:`course_lib.projection`.

Sections: colours; points, segments, triplets, arrows and circles; panels
side by side; image grids, learning curves and animations. Plus one NumPy
helper the demos share, :func:`distances_numpy`.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from course_lib.projection import project

#: One colour per class (plotly's D3 palette), the same in every figure.
CLASS_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)
POSITIVE_COLOR = "#2ca02c"
NEGATIVE_COLOR = "#d62728"
INACTIVE_COLOR = "#c7c7c7"  # triplets or pairs that contribute nothing


def distances_numpy(points):
    """Euclidean distance matrix [B, B] computed from the differences (float64).

    D(i, j) = ||x_i - x_j||, in NumPy for the demos' figures and checks (the
    losses use :func:`course_lib.distances.pairwise_distances`).
    """
    x = np.asarray(points, dtype=np.float64)
    return np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)


def class_color(label):
    return CLASS_COLORS[int(label) % len(CLASS_COLORS)]


def points_figure(points, labels, class_names=None, title=None, size=9):
    """2-D points coloured by class, one legend entry per class, equal axes."""
    points, labels = np.asarray(points), np.asarray(labels).reshape(-1)
    fig = go.Figure()
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        name = class_names[int(label)] if class_names is not None else f"class {label}"
        fig.add_trace(go.Scatter(
            x=points[rows, 0], y=points[rows, 1], mode="markers", name=name,
            marker=dict(size=size, color=class_color(label), line=dict(width=1, color="white")),
            customdata=rows, hovertemplate="point %{customdata}<extra>" + name + "</extra>",
        ))
    fig.update_layout(title=title, template="plotly_white", height=460,
                      margin=dict(l=20, r=20, t=50, b=20))
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def add_triplets(fig, points, triplets, max_triplets=200, opacity=0.5,
                 colors=(POSITIVE_COLOR, NEGATIVE_COLOR), names=("anchor-positive", "anchor-negative")):
    """Draw triplets (anchor, positive, negative) as lines: a-p green, a-n red.

    ``triplets`` is a :class:`course_lib.mining.Triplets` (or 3 index arrays).
    Only the first ``max_triplets`` are drawn, to keep the figure legible;
    ``colors`` and ``names`` set the two traces (e.g. grey for inactive ones).
    """
    points = np.asarray(points)
    a, p, n = (np.asarray(t)[:max_triplets] for t in triplets)
    for ends, color, name in ((p, colors[0], names[0]), (n, colors[1], names[1])):
        add_segments(fig, points[a], points[ends], color, name, opacity=opacity)
    return fig


def add_segments(fig, starts, ends, color, name, opacity=1.0, width=1.5):
    """One line trace of the segments starts[k] -> ends[k]; an empty trace if there are none."""
    xs, ys = _segments(starts, ends)
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, opacity=opacity,
                             line=dict(color=color, width=width), hoverinfo="skip"))
    return fig


def _segments(starts, ends):
    """x and y lists for many line segments in one trace (None breaks the line)."""
    starts = np.asarray(starts, dtype=float).reshape(-1, 2)
    ends = np.asarray(ends, dtype=float).reshape(-1, 2)
    points = np.stack([starts, ends, np.full_like(starts, np.nan)], axis=1).reshape(-1, 2)  # a, b, gap, ...
    xs, ys = ([None if np.isnan(v) else float(v) for v in column] for column in points.T)
    return xs, ys


def add_arrows(fig, starts, vectors, color="black", name="gradient", scale=1.0):
    """Arrows from ``starts`` along ``vectors`` (e.g. minus the gradient: where points move).

    Zero vectors draw nothing. Each head is turned along its own arrow:
    plotly measures marker angles clockwise from "up", atan2(dx, dy).
    """
    starts = np.asarray(starts, dtype=float).reshape(-1, 2)
    vectors = scale * np.asarray(vectors, dtype=float).reshape(-1, 2)
    keep = np.linalg.norm(vectors, axis=1) > 0
    starts, vectors = starts[keep], vectors[keep]
    ends = starts + vectors
    add_segments(fig, starts, ends, color, name, width=2)
    angles = np.degrees(np.arctan2(vectors[:, 0], vectors[:, 1])) % 360
    fig.add_trace(go.Scatter(x=ends[:, 0], y=ends[:, 1], mode="markers", showlegend=False,
                             marker=dict(symbol="arrow", angleref="up", angle=angles, size=10, color=color),
                             hoverinfo="skip"))
    return fig


def add_scaled_arrows(fig, starts, vectors, scale=None, length=0.5, color="black", name=None):
    """:func:`add_arrows` for the non-zero ``vectors``, every one multiplied by ``scale``.

    ``scale=None`` picks the scale that draws the longest vector ``length``
    long: fine for one picture, wrong under a slider, where arrows would no
    longer grow with the force; there, pass one fixed ``scale``. The name
    (legend) shows the scale. Always adds the two traces (lines, heads),
    empty when no vector is non-zero, so a figure keeps its trace count.
    """
    starts, vectors = np.reshape(starts, (-1, 2)), np.reshape(vectors, (-1, 2)).astype(float)
    norms = np.linalg.norm(vectors, axis=1)
    keep = norms > 1e-7
    if scale is None:
        scale = length / norms.max() if keep.any() else 1.0
    return add_arrows(fig, starts[keep], vectors[keep], color, name or f"−gradient (×{scale:.3g})", scale)


def add_circle(fig, center, radius, color="gray", dash="dash", name=None):
    """A circle (e.g. a margin around an anchor) as a layout shape."""
    cx, cy = center
    fig.add_shape(type="circle", x0=cx - radius, y0=cy - radius, x1=cx + radius, y1=cy + radius,
                  line=dict(color=color, dash=dash), name=name)
    return fig


def points_on_top(fig, num_point_traces):
    """Move the first ``num_point_traces`` traces (the points of
    :func:`points_figure`) to the end, so lines drawn later do not cover them."""
    traces = list(fig.data)
    fig.data = traces[num_point_traces:] + traces[:num_point_traces]
    return fig


def side_by_side(figures, titles, equal_aspect=None, widths=None, legend_from=(0,)):
    """Put standalone figures (built with the functions above) in one row of subplots.

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
    fig.update_layout(template="plotly_white", height=460, margin=dict(l=20, r=20, t=90, b=40),
                      legend=dict(orientation="h", y=-0.12, traceorder="normal"))
    return clear_of_modebar(fig)


def clear_of_modebar(fig):
    """Left-align the figure title so plotly's toolbar (top right) never covers its end."""
    fig.update_layout(title_x=0.01, title_xanchor="left")
    return fig


def _axis_ref(ref, axis, suffix):
    """Move a shape's or annotation's axis reference ("x", "y domain", ...) to panel ``suffix``."""
    if ref in (None, axis):
        return f"{axis}{suffix}"
    if ref == f"{axis} domain":
        return f"{axis}{suffix} domain"
    return ref


def image_grid(images, titles=None, columns=8, height_per_row=110, title=None, highlight=None):
    """uint8 images [N, 28, 28] in a grid; ``highlight`` = per-image colour of the title or None."""
    images = np.asarray(images)
    rows = max(1, int(np.ceil(len(images) / columns)))
    titles = list(titles) if titles is not None else [""] * len(images)
    if highlight is not None:
        titles = [f"<span style='color:{c}'>{t}</span>" if c else t for t, c in zip(titles, highlight)]
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=titles + [""] * (rows * columns - len(titles)),
                        horizontal_spacing=0.01, vertical_spacing=0.08 / rows)
    for i, image in enumerate(images):
        rgb = np.repeat(255 - image[..., None], 3, axis=-1)  # dark ink on white
        fig.add_trace(go.Image(z=rgb, hoverinfo="skip"), row=i // columns + 1, col=i % columns + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=10)
    fig.update_layout(title=title, height=60 + rows * height_per_row, margin=dict(l=10, r=10, t=60, b=10),
                      template="plotly_white")
    return fig


def learning_curves(histories, fields=("loss", "active_fraction", "precision_at_1")):
    """One panel per field, one line per run: ``histories`` maps a run name to a History."""
    fig = make_subplots(rows=1, cols=len(fields), subplot_titles=[f.replace("_", " ") for f in fields])
    for i, (name, history) in enumerate(histories.items()):
        color = CLASS_COLORS[i % len(CLASS_COLORS)]
        for col, field in enumerate(fields, start=1):
            values = history[field]
            fig.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=values, name=name,
                                     legendgroup=name, showlegend=col == 1, line=dict(color=color)),
                          row=1, col=col)
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_layout(template="plotly_white", height=330, margin=dict(l=40, r=20, t=60, b=40))
    return fig


def embedding_animation(snapshots, labels, class_names=None, title="Embedding during training"):
    """Animate 2-D PCA views of embedding snapshots (before training, then each epoch).

    One PCA is fitted on all snapshots together, so the axes stay fixed and
    the motion is the embedding's, not the projection's.
    """
    labels = np.asarray(labels).reshape(-1)
    stacked = project(np.concatenate(snapshots), method="pca", dim=2)
    frames_xy = np.split(stacked, len(snapshots))
    names = [class_names[int(c)] if class_names is not None else str(c) for c in np.unique(labels)]

    def traces(xy):
        return [go.Scatter(x=xy[labels == c, 0], y=xy[labels == c, 1], mode="markers", name=name,
                           marker=dict(size=5, color=class_color(c)))
                for c, name in zip(np.unique(labels), names)]

    frames = [go.Frame(data=traces(xy), name=str(i)) for i, xy in enumerate(frames_xy)]
    steps = [dict(method="animate", label="start" if i == 0 else f"epoch {i}",
                  args=[[str(i)], dict(mode="immediate", frame=dict(duration=400, redraw=False))])
             for i in range(len(frames))]
    lo, hi = stacked.min(axis=0), stacked.max(axis=0)
    pad = 0.05 * (hi - lo)
    fig = go.Figure(data=traces(frames_xy[0]), frames=frames)
    fig.update_layout(
        title=title, template="plotly_white", height=520,
        xaxis=dict(range=[lo[0] - pad[0], hi[0] + pad[0]]), yaxis=dict(range=[lo[1] - pad[1], hi[1] + pad[1]]),
        updatemenus=[dict(type="buttons", x=0, y=-0.08, xanchor="left", buttons=[
            dict(label="play", method="animate",
                 args=[None, dict(frame=dict(duration=500, redraw=False), fromcurrent=True)])])],
        sliders=[dict(active=0, steps=steps, x=0.12, len=0.88, y=-0.02)],
    )
    return fig
