"""Retrieval by nearest neighbour: the pure functions behind lessons 00, 01 and 06.

An *embedding* maps every image to a vector; *retrieval* answers a query
image with the gallery items whose vectors are closest to the query's:

    neighbours(q) = the k gallery items g with the smallest d(f(q), f(g)),

ranked by distance (ties by gallery index, as :func:`course_lib.retrieval.nearest`
breaks them). The simplest embedding is the image itself: 28 x 28 pixels
flattened to a vector of 784 numbers in [0, 1] (:func:`pixel_embeddings`).
A learned embedding f is good when the neighbours share the query's class:
precision@1 = share of queries whose nearest neighbour has their class,
MAP@R as defined in :mod:`course_lib.retrieval` (Musgrave et al. 2020).

The honest test of an embedding (TF Similarity's hello-world, lesson 06):
train on some classes, then search for classes the network never saw.
:func:`query_gallery_split` cuts a test set into queries and a gallery,
:func:`seen_unseen_metrics` scores seen- and unseen-class queries against
the same gallery (both, with :func:`pixel_embeddings`, live in
:mod:`course_lib.holdout`, the protocol's home, and are re-exported here),
:func:`seen_unseen_by_epoch` follows both during training.
Where the unseen-class information goes: :func:`head_stages` gives the
embedding at each stage of the projection head (backbone features f,
projection W f + b, unit length), :func:`mean_norm_by_class` the length of
the features of each class (the unit-length step discards it).

Widgets (``compute(**controls) -> state``, ``draw(state) -> go.Figure``):

* :func:`browse` / :func:`draw_browse`: a page of images of one class (lesson 00);
* :func:`neighbours` / :func:`draw_neighbours`: a query and its k nearest
  gallery items, wrong ones in red (lessons 01 and 06).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from course_lib import retrieval, viz
from course_lib.holdout import pixel_embeddings, query_gallery_split, seen_unseen_metrics  # the protocol's home

__all__ = [
    "CORRECT_COLOR", "WRONG_COLOR", "QUERY_COLOR",
    "pixel_embeddings", "compare", "query_gallery_split", "seen_unseen_metrics",
    "per_class_precision_at_1", "neighbour_class_counts", "seen_unseen_by_epoch",
    "head_stages", "mean_norm_by_class",
    "browse", "browse_pages", "draw_browse", "readout_browse",
    "neighbours", "draw_neighbours", "readout_neighbours",
    "draw_per_class", "draw_by_epoch", "draw_spaces_by_epoch", "draw_norms",
    "HOLDOUT_SPLITS_PATH", "load_holdout_splits", "holdout_splits_table", "draw_holdout_splits",
]

CORRECT_COLOR = viz.POSITIVE_COLOR  # green: the neighbour has the query's class
WRONG_COLOR = viz.NEGATIVE_COLOR  # red: it has another class
QUERY_COLOR = "#1f3b73"  # dark blue: the query itself


# ---------------------------------------------------------------------------
# embeddings and scores
# ---------------------------------------------------------------------------
def compare(spaces, labels, ks=(1, 5, 10), metric="euclidean"):
    """Leave-one-out retrieval metrics of several embeddings of the same items.

    ``spaces`` maps a name to an [N, D] embedding (D may differ between
    spaces); ``labels`` [N]. Returns ``{name: course_lib.retrieval.evaluate(...)}``
    with every item a query against the N - 1 others.
    """
    return {name: retrieval.evaluate(x, labels, ks=ks, metric=metric) for name, x in spaces.items()}


def per_class_precision_at_1(queries, query_labels, gallery, gallery_labels, num_classes,
                             metric="euclidean"):
    """Precision@1 of the queries of each class: float array [num_classes] (NaN: no query).

    P@1(c) = share of the class-c queries whose nearest gallery item has class c.
    Weighted by the number of queries per class, these average to the
    overall precision@1 of :func:`course_lib.retrieval.evaluate`.
    """
    query_labels = np.asarray(query_labels).reshape(-1)
    gallery_labels = np.asarray(gallery_labels).reshape(-1)
    nearest_index, _ = retrieval.nearest(queries, gallery, k=1, metric=metric)
    hit = gallery_labels[nearest_index[:, 0]] == query_labels
    result = np.full(num_classes, np.nan)
    for c in range(num_classes):
        mask = query_labels == c
        if mask.any():
            result[c] = hit[mask].mean()
    return result


def neighbour_class_counts(queries, query_labels, gallery, gallery_labels, label, num_classes,
                           metric="euclidean"):
    """For the queries of class ``label``: how many have their nearest neighbour in each class.

    An int array [num_classes]; entry ``label`` counts the right answers, the
    others say which classes the embedding confuses ``label`` with.
    """
    query_labels = np.asarray(query_labels).reshape(-1)
    rows = np.flatnonzero(query_labels == label)
    if len(rows) == 0:
        raise ValueError(f"No query has label {label}.")
    nearest_index, _ = retrieval.nearest(np.asarray(queries)[rows], gallery, k=1, metric=metric)
    found = np.asarray(gallery_labels).reshape(-1)[nearest_index[:, 0]]
    return np.bincount(found, minlength=num_classes)


def seen_unseen_by_epoch(snapshots, labels, unseen, baseline=None, metric="euclidean"):
    """Seen/unseen precision@1 and MAP@R of each training snapshot.

    ``snapshots``: the [N, D] embeddings of the same N held-out items before
    training and after each epoch (``History.snapshots`` of
    :func:`course_lib.training.train`), ``labels`` their classes
    (``History.snapshot_labels``). Each snapshot is scored with
    :func:`seen_unseen_metrics` (queries/gallery by :func:`query_gallery_split`)
    with the distance ``metric`` ("cosine" for the held-out recipe's conv features).
    ``baseline``: optional [N, D'] embedding of the same items (e.g. pixels),
    scored once for reference, with the Euclidean distance.

    Returns ``{"epoch": [0, 1, ...], "seen_precision_at_1": [...],
    "unseen_precision_at_1": [...], "seen_map_at_r": [...], "unseen_map_at_r": [...],
    "baseline": {"seen_map_at_r": ..., ...} or None}``.
    """
    labels = np.asarray(labels).reshape(-1)
    curves = {"epoch": list(range(len(snapshots)))}
    keys = [f"{g}_{m}" for g in ("seen", "unseen") for m in ("precision_at_1", "map_at_r")]
    for key in keys:
        curves[key] = []
    for x in snapshots:
        scores = seen_unseen_metrics(x, labels, unseen, metric=metric)
        for key in keys:
            group, score = key.split("_", 1)
            curves[key].append(scores[group][score])
    curves["baseline"] = None
    if baseline is not None:
        scores = seen_unseen_metrics(baseline, labels, unseen)
        curves["baseline"] = {key: scores[key.split("_", 1)[0]][key.split("_", 1)[1]] for key in keys}
    return curves


def head_stages(model, images):
    """The embedding of ``images`` after each stage of an :func:`course_lib.models.embedding_network`.

    Returns ``{"backbone": f [N, 128], "projection": W f + b [N, d],
    "unit length": (W f + b) / ||W f + b||}``: the backbone's features, the
    linear projection (the layer named ``"projection"``), and the network's
    output when it ends with L2 normalisation. The last two are computed
    from f with the projection's own weights W, b, so all three come from
    one pass through the backbone.
    """
    from course_lib import training  # TensorFlow, needed here only

    names = [layer.name for layer in model.layers]
    if "backbone" not in names or "projection" not in names:
        raise ValueError(f"`model` must have layers named 'backbone' and 'projection' "
                         f"(models.embedding_network), got layers {names}.")
    features = training.embed(model.get_layer("backbone"), images)
    weights, bias = model.get_layer("projection").get_weights()
    projected = (features @ weights + bias).astype(np.float32)
    norms = np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-7)  # Keras's epsilon
    return {"backbone": features, "projection": projected, "unit length": projected / norms}


def mean_norm_by_class(embeddings, labels, num_classes):
    """Mean Euclidean length ||x|| of the embeddings of each class: float array [num_classes] (NaN: none)."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(embeddings):
        raise ValueError(f"{len(labels)} labels for {len(embeddings)} embeddings.")
    norms = np.linalg.norm(embeddings, axis=1)
    return np.array([norms[labels == c].mean() if np.any(labels == c) else np.nan
                     for c in range(num_classes)])


# ---------------------------------------------------------------------------
# widget: browse a dataset class by class (lesson 00)
# ---------------------------------------------------------------------------
def browse(label, page=1, *, images, labels, class_names, per_page=16):
    """One page of the images of class ``label``: state for :func:`draw_browse`.

    Pages are numbered from 1, as the slider, the readout and the title show
    them. The class's images are taken in array order; page p shows numbers
    (p - 1) * per_page to p * per_page - 1 of them (the last page may be
    shorter; a page past either end shows the first or the last page).
    """
    labels = np.asarray(labels).reshape(-1)
    rows = np.flatnonzero(labels == label)
    pages = max(1, int(np.ceil(len(rows) / per_page)))
    page = int(min(max(page, 1), pages))
    shown = rows[(page - 1) * per_page:page * per_page]
    return {
        "label": int(label),
        "class_name": class_names[int(label)],
        "page": page,
        "pages": pages,
        "count": len(rows),
        "indices": shown,
        "images": np.asarray(images)[shown],
        "labels": labels[shown],
    }


def browse_pages(labels, per_page=16):
    """The number of pages of the largest class: the page slider's maximum."""
    counts = np.bincount(np.asarray(labels).reshape(-1).astype(np.int64))
    return max(1, int(np.ceil(counts.max() / per_page)))


def readout_browse(state):
    return (f"{state['class_name']}: {state['count']} images, page {state['page']} of "
            f"{state['pages']} (indices {state['indices'][0]}..{state['indices'][-1]})")


def draw_browse(state, columns=8):
    """The page as an image grid, each image titled with its index in the array."""
    titles = [f"#{i}" for i in state["indices"]]
    return viz.image_grid(state["images"], titles=titles, columns=columns, height_per_row=125,
                          title=f"{state['class_name']} (page {state['page']}/{state['pages']})")


# ---------------------------------------------------------------------------
# widget: a query and its nearest neighbours (lessons 01 and 06)
# ---------------------------------------------------------------------------
def neighbours(query, space, *, spaces, labels, images, k=8, queries=None, gallery=None,
               class_names=None, metric="euclidean"):
    """The k nearest gallery items of one query in one embedding space.

    Args:
      query: position of the query in ``queries`` (the slider's value).
      space: the key of ``spaces`` to search in (the dropdown's value).
      spaces: name -> [N, D] embedding of the same N items.
      labels, images: [N] classes and uint8 [N, 28, 28] pictures of the items.
      queries: indices of the items a query may be (default: all N).
      gallery: indices of the items searched (default: all N). The query
        itself is never its own neighbour (left out by index).

    Returns a state dict: ``index`` (the query's item index), ``neighbours``
    (item indices, closest first), ``distances``, ``neighbour_labels``,
    ``correct`` (bool per neighbour), ``hits``, ``precision_at_k`` and what
    :func:`draw_neighbours` needs.
    """
    labels = np.asarray(labels).reshape(-1)
    n = len(labels)
    queries = np.arange(n) if queries is None else np.asarray(queries).reshape(-1)
    gallery = np.arange(n) if gallery is None else np.asarray(gallery).reshape(-1)
    if space not in spaces:
        raise ValueError(f"Unknown space={space!r}: expected one of {', '.join(map(repr, spaces))}.")
    if not 0 <= int(query) < len(queries):
        raise ValueError(f"`query` must lie in 0..{len(queries) - 1}, got {query}.")
    index = int(queries[int(query)])
    candidates = gallery[gallery != index]  # by index: an exact duplicate still counts
    if k > len(candidates):
        raise ValueError(f"k={k} but the gallery holds only {len(candidates)} other items.")
    x = np.asarray(spaces[space])
    found, distances = retrieval.nearest(x[index][None, :], x[candidates], k=k, metric=metric)
    found = candidates[found[0]]
    correct = labels[found] == labels[index]
    names = class_names if class_names is not None else [str(c) for c in range(labels.max() + 1)]
    return {
        "space": space,
        "query": int(query),
        "index": index,
        "label": int(labels[index]),
        "class_name": names[int(labels[index])],
        "neighbours": found,
        "distances": distances[0],
        "neighbour_labels": labels[found],
        "neighbour_names": [names[int(c)] for c in labels[found]],
        "correct": correct,
        "hits": int(correct.sum()),
        "precision_at_k": float(correct.mean()),
        "k": int(k),
        "metric": metric,
        "query_image": np.asarray(images)[index],
        "neighbour_images": np.asarray(images)[found],
    }


def readout_neighbours(state):
    first = "right" if state["correct"][0] else f"wrong ({state['neighbour_names'][0]})"
    return (f"{state['space']}: query #{state['index']} ({state['class_name']}); "
            f"{state['hits']} of {state['k']} neighbours share its class; nearest is {first}")


def draw_neighbours(state, columns=None):
    """The query, then its neighbours closest first: green titles right, red wrong."""
    images = np.concatenate([state["query_image"][None], state["neighbour_images"]])
    titles = [f"query: {state['class_name']}"] + [
        f"{i + 1}. {name} ({d:.2f})"
        for i, (name, d) in enumerate(zip(state["neighbour_names"], state["distances"]))]
    colors = [QUERY_COLOR] + [CORRECT_COLOR if c else WRONG_COLOR for c in state["correct"]]
    columns = columns or len(images)
    fig = viz.image_grid(images, titles=titles, columns=columns, height_per_row=130,
                         highlight=colors,
                         title=(f"{state['space']}: query #{state['index']} and its "
                                f"{state['k']} nearest neighbours ({state['metric']} distance)"))
    # A frame around each wrong neighbour, so the mistakes jump out.
    for position, right in enumerate(state["correct"], start=1):
        if not right:
            axis = "" if position == 0 else str(position + 1)
            fig.add_shape(type="rect", xref=f"x{axis} domain", yref=f"y{axis} domain",
                          x0=0, x1=1, y0=0, y1=1, line=dict(color=WRONG_COLOR, width=3))
    return fig


# ---------------------------------------------------------------------------
# static figures (lesson 06)
# ---------------------------------------------------------------------------
def draw_per_class(table, class_names, unseen=(), title="Precision@1 per query class", y_title="precision@1",
                   y_range=(0, 1.02)):
    """Grouped bars: one group per class, one bar per space; unseen classes shaded.

    ``table`` maps a space name to a [num_classes] array from
    :func:`per_class_precision_at_1` (or any per-class value: ``y_title``,
    ``y_range``, None for automatic).
    """
    unseen = set(int(c) for c in unseen)
    names = [f"{n} (unseen)" if i in unseen else n for i, n in enumerate(class_names)]
    fig = go.Figure()
    for i, (space, values) in enumerate(table.items()):
        fig.add_trace(go.Bar(x=names, y=np.asarray(values, dtype=float), name=space,
                             marker_color=viz.CLASS_COLORS[i % len(viz.CLASS_COLORS)],
                             hovertemplate="%{x}: %{y:.3f}<extra>" + space + "</extra>"))
    for c in sorted(unseen):
        fig.add_vrect(x0=c - 0.5, x1=c + 0.5, fillcolor="gray", opacity=0.15, line_width=0, layer="below")
    fig.update_layout(barmode="group", title=title, template="plotly_white", height=420,
                      yaxis=dict(title=y_title, range=list(y_range) if y_range else None),
                      margin=dict(l=50, r=20, t=60, b=90))
    return fig


def draw_by_epoch(curves, metric="map_at_r", name="learned"):
    """Seen- and unseen-class ``metric`` per epoch (0 = before training), baseline dashed."""
    label = {"map_at_r": "MAP@R", "precision_at_1": "precision@1"}[metric]
    fig = go.Figure()
    for group, color in (("seen", viz.POSITIVE_COLOR), ("unseen", viz.NEGATIVE_COLOR)):
        fig.add_trace(go.Scatter(x=curves["epoch"], y=curves[f"{group}_{metric}"], mode="lines+markers",
                                 name=f"{name}: {group} classes", line=dict(color=color)))
        if curves.get("baseline"):
            value = curves["baseline"][f"{group}_{metric}"]
            fig.add_trace(go.Scatter(x=[curves["epoch"][0], curves["epoch"][-1]], y=[value, value],
                                     mode="lines", name=f"pixels: {group} classes",
                                     line=dict(color=color, dash="dash")))
    fig.update_layout(title=f"{label} of seen and unseen classes during training",
                      template="plotly_white", height=380,
                      xaxis=dict(title="epoch (0 = before training)", dtick=1),
                      yaxis=dict(title=label), margin=dict(l=50, r=20, t=60, b=50))
    return fig


def draw_spaces_by_epoch(curves, metric="map_at_r", title=None):
    """Several spaces of one training run, epoch by epoch: unseen classes solid, seen dotted.

    ``curves`` maps a space's name to the output of :func:`seen_unseen_by_epoch`;
    the first one with a ``baseline`` (pixels) draws it, dashed grey.
    """
    label = {"map_at_r": "MAP@R", "precision_at_1": "precision@1"}[metric]
    fig = go.Figure()
    for i, (name, curve) in enumerate(curves.items()):
        color = viz.CLASS_COLORS[i % len(viz.CLASS_COLORS)]
        for group, dash in (("unseen", "solid"), ("seen", "dot")):
            fig.add_trace(go.Scatter(x=curve["epoch"], y=curve[f"{group}_{metric}"], mode="lines+markers",
                                     name=f"{name}: {group} classes", line=dict(color=color, dash=dash)))
    baseline = next((c for c in curves.values() if c.get("baseline")), None)
    if baseline is not None:
        for group, dash in (("unseen", "dash"), ("seen", "dashdot")):
            value = baseline["baseline"][f"{group}_{metric}"]
            fig.add_trace(go.Scatter(x=[baseline["epoch"][0], baseline["epoch"][-1]], y=[value, value],
                                     mode="lines", name=f"pixels: {group} classes",
                                     line=dict(color="gray", dash=dash)))
    fig.update_layout(title=title or f"{label} during training, per space",
                      template="plotly_white", height=420,
                      xaxis=dict(title="epoch (0 = before training)", dtick=1),
                      yaxis=dict(title=label), margin=dict(l=50, r=20, t=60, b=50))
    return fig


def draw_norms(norms, class_names, unseen=(), title="Mean length of the features, per class"):
    """Bars of :func:`mean_norm_by_class` (one group per class, one bar per space); unseen classes shaded."""
    return draw_per_class(norms, class_names, unseen, title=title, y_title="mean length ||x||", y_range=None)


# ------------------------------------------- the recipe on every split (benchmarks/results.py --splits)
#: Where ``python benchmarks/results.py --splits`` writes its runs (7 splits x 3 seeds, too slow for a lesson).
HOLDOUT_SPLITS_PATH = "benchmarks/results/holdout_splits.json"
#: The rows of each run, as the benchmark names them, and how a lesson labels them.
SPLIT_ROWS = {"pixels": "pixels", "untrained": "untrained network (conv, cosine)",
              "projection": "trained: head output (64-d)", "recipe": "trained: conv features, cosine (recipe)"}


def load_holdout_splits(path=None):
    """The committed results of ``python benchmarks/results.py --splits`` (``meta``, ``runs``, ``summary``)."""
    import json
    import os

    if path is None:
        path = os.path.join(os.path.dirname(__file__), "..", "..", HOLDOUT_SPLITS_PATH)
    with open(path) as f:
        return json.load(f)


def holdout_splits_table(result, group="unseen", metric="MAP@R"):
    """One row per split: mean and std over seeds of each row's ``group`` ``metric``, ratios, seeds.

    Columns ``{row} mean``, ``{row} std`` for pixels, untrained, projection and
    recipe, ``recipe / pixels``, ``untrained / pixels`` (ratios of the means),
    ``training adds`` (recipe mean - untrained mean) and ``seeds``.
    """
    import pandas as pd

    rows = {}
    for split, summary in result["summary"].items():
        stats = {row: summary["stats"][row][group][metric] for row in SPLIT_ROWS}
        line = {f"{row} {part}": stats[row][part] for row in SPLIT_ROWS for part in ("mean", "std")}
        line["recipe / pixels"] = stats["recipe"]["mean"] / stats["pixels"]["mean"]
        line["untrained / pixels"] = stats["untrained"]["mean"] / stats["pixels"]["mean"]
        line["training adds"] = stats["recipe"]["mean"] - stats["untrained"]["mean"]
        line["seeds"] = len(summary["seeds"])
        rows[split] = line
    return pd.DataFrame(rows).T.rename_axis("held-out split")


def draw_holdout_splits(result, group="unseen", metric="MAP@R"):
    """Grouped bars, one group per split: pixels, untrained, head output, recipe; error bars = std over seeds."""
    table = holdout_splits_table(result, group, metric)
    fig = go.Figure()
    colors = {"pixels": "#9e9e9e", "untrained": "#b0c4de", "projection": WRONG_COLOR, "recipe": CORRECT_COLOR}
    for row, name in SPLIT_ROWS.items():
        fig.add_trace(go.Bar(x=list(table.index), y=table[f"{row} mean"], name=name, marker_color=colors[row],
                             error_y=dict(type="data", array=table[f"{row} std"], visible=True)))
    seeds = sorted(set(table["seeds"].astype(int)))
    fig.update_layout(barmode="group", template="plotly_white", height=430,
                      title=f"{group.capitalize()} classes, {metric}: mean ± std over "
                            f"{'/'.join(map(str, seeds))} seeds per split",
                      xaxis=dict(title="dataset and held-out classes"), yaxis=dict(title=f"{group} {metric}"),
                      legend=dict(orientation="h", y=-0.25), margin=dict(l=50, r=20, t=60, b=110))
    return fig
