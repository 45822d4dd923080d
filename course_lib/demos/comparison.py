"""All the losses under one protocol (Musgrave, Belongie, Lim 2020): lesson 09.

"A Metric Learning Reality Check" (ECCV 2020) found that many reported gains
came from unequal comparisons: different networks, embedding sizes, data
augmentation, training budgets, or hyper-parameters tuned on the test set.
Its protocol: the same backbone, data, batches and budget for every loss,
and metrics that look at the whole ranking (MAP@R, R-precision) besides
precision@1.

Here every run gets the same CNN backbone (:func:`course_lib.models.backbone`),
the same P x K batches (same seed), the same number of steps and the same
held-out set. The softmax cross-entropy baseline trains
:func:`course_lib.models.classifier_network` and retrieves with its backbone's
128-d features.

``run_comparison`` trains; ``results_table`` makes a pandas DataFrame;
``metric_view`` / ``draw_metric`` / ``readout`` drive the metric selector.
"""

from __future__ import annotations

import time

import numpy as np
import plotly.graph_objects as go

from course_lib import models, training
from course_lib.viz import CLASS_COLORS

__all__ = ["RUNS", "METRIC_NAMES", "build_model", "run_comparison", "results_table",
           "metric_view", "draw_metric", "readout", "draw_results", "best_by", "baseline_name",
           "count_above", "explain_best", "explain_baseline"]

#: The runs: display name -> (loss, loss options, network). ``network`` is
#: "unit" (L2-normalised embedding), "free" (no normalisation: N-pairs needs
#: its norms, kept in check by l2_reg) or "classifier" (softmax baseline).
RUNS = {
    "contrastive": ("contrastive", {"margin": 0.5}, "unit"),
    "triplet (all)": ("triplet", {"mining": "all", "margin": 0.2}, "unit"),
    "triplet (hard)": ("triplet", {"mining": "hard", "margin": 0.2}, "unit"),
    "triplet (semi-hard)": ("triplet", {"mining": "semi-hard", "margin": 0.2}, "unit"),
    "N-pairs": ("npairs", {"l2_reg": 0.002}, "free"),
    "angular": ("angular", {"alpha_degrees": 45.0}, "unit"),
    "softmax CE (baseline)": ("cross_entropy", {}, "classifier"),
}

#: Table column -> the key of :func:`course_lib.retrieval.evaluate`.
METRIC_NAMES = {"P@1": "precision_at_1", "R-precision": "r_precision", "MAP@R": "map_at_r"}


def build_model(network, embedding_dim=64, num_classes=10, seed=0):
    """A fresh model with seeded weights: ``"unit"``, ``"free"`` or ``"classifier"``."""
    if network == "classifier":
        return models.classifier_network(num_classes, seed=seed)
    if network not in ("unit", "free"):
        raise ValueError(f"network must be 'unit', 'free' or 'classifier', got {network!r}")
    return models.embedding_network(embedding_dim, l2_normalize=network == "unit", seed=seed)


def run_comparison(train_images, train_labels, eval_images, eval_labels, runs=None, *, epochs=2,
                   steps_per_epoch=50, classes_per_batch=10, samples_per_class=4, seed=0,
                   eval_size=1000, embedding_dim=64, verbose=True):
    """Train every run of ``runs`` (default :data:`RUNS`) under the same protocol.

    Same seed for the weights and the batches, same steps, same held-out set.
    Returns ``{name: History}``; each History also gets ``wall_seconds``
    (build + train + final evaluation).
    """
    runs = RUNS if runs is None else runs
    num_classes = int(np.max(train_labels)) + 1
    histories = {}
    for name, (loss, options, network) in runs.items():
        start = time.perf_counter()
        model = build_model(network, embedding_dim, num_classes, seed)
        history = training.train(
            model, train_images, train_labels, loss=loss, loss_options=options,
            eval_images=eval_images, eval_labels=eval_labels, epochs=epochs,
            steps_per_epoch=steps_per_epoch, classes_per_batch=classes_per_batch,
            samples_per_class=samples_per_class, seed=seed, eval_size=eval_size, progress=False)
        history.wall_seconds = time.perf_counter() - start
        histories[name] = history
        if verbose:
            m = history.final_metrics
            print(f"{name:<22} P@1 {m['precision_at_1']:.3f}  MAP@R {m['map_at_r']:.3f}  "
                  f"({history.wall_seconds:.1f} s)")
    return histories


def results_table(histories):
    """A pandas DataFrame, one row per run: P@1, R-precision, MAP@R (all held-out
    queries, leave-one-out), the last epoch's training loss, seconds, collapse."""
    import pandas as pd

    rows = []
    for name, h in histories.items():
        row = {"loss": name}
        row.update({column: h.final_metrics[key] for column, key in METRIC_NAMES.items()})
        row["final train loss"] = h["loss"][-1] if h.records else float("nan")
        row["seconds"] = getattr(h, "wall_seconds", float(sum(h["seconds"])))
        row["collapsed"] = h.collapse is not None
        rows.append(row)
    return pd.DataFrame(rows).set_index("loss")


def best_by(table, metric="MAP@R"):
    """The name (index) of the run with the highest ``metric``."""
    return str(table[metric].idxmax())


def baseline_name(table):
    """The row label of the softmax baseline (the run whose name says "baseline"), or None."""
    names = [str(n) for n in table.index if "baseline" in str(n)]
    return names[0] if names else None


def count_above(table, baseline, metric="MAP@R"):
    """How many runs other than ``baseline`` score strictly higher than it on ``metric``."""
    others = table[metric].drop(index=baseline)
    return int((others > table.at[baseline, metric]).sum())


def explain_best(table, metric="MAP@R"):
    """One sentence for the prediction check: the winner, the runner-up, the gap, and what one seed means."""
    ranked = table[metric].astype(float).sort_values(ascending=False)
    (first, v1), (second, v2) = list(ranked.items())[:2]
    return (f"{first} leads with {metric} {v1:.3f}, {second} follows at {v2:.3f} (a gap of {v1 - v2:.3f}). "
            "This is one seed, retrieving among the classes seen in training: it says which loss "
            "got going fastest under these settings, not which loss is better.")


def explain_baseline(table, baseline, metric="MAP@R"):
    """One sentence: which runs score above the baseline on ``metric``, and what that covers."""
    value = float(table.at[baseline, metric])
    others = table[metric].drop(index=baseline).astype(float).sort_values(ascending=False)
    above = others[others > value]
    if above.empty:
        text = f"the softmax baseline ({metric} {value:.3f}) is above every ranking loss in this run"
    elif len(above) == len(others):
        text = f"every ranking loss is above the softmax baseline ({metric} {value:.3f}) in this run"
    else:
        text = (f"the softmax baseline scores {value:.3f}; above it: "
                + ", ".join(f"{name} ({v:.3f})" for name, v in above.items()))
    return text + " (one seed, on the classes seen in training)."


def metric_view(table, metric="MAP@R", order="as run"):
    """State of the selector: the runs' values of one metric, in run order or sorted.

    Keys: ``metric``, ``order``, ``names``, ``values``, ``colors`` (one per run,
    fixed by its row in ``table`` so a run keeps its colour when sorted), ``best``,
    ``best_value``, ``baseline`` (the softmax baseline's value, or None),
    ``spread`` (best - worst).
    """
    if metric not in table.columns:
        raise ValueError(f"metric must be one of {list(table.columns)}, got {metric!r}")
    series = table[metric].astype(float)
    if order == "sorted":
        series = series.sort_values(ascending=False)
    elif order != "as run":
        raise ValueError(f"order must be 'as run' or 'sorted', got {order!r}")
    baseline = [n for n in series.index if "baseline" in n]
    row = {name: i for i, name in enumerate(table.index)}
    return {
        "metric": metric, "order": order, "names": [str(n) for n in series.index],
        "values": series.to_numpy(),
        "colors": [CLASS_COLORS[row[n] % len(CLASS_COLORS)] for n in series.index],
        "best": str(series.idxmax()), "best_value": float(series.max()),
        "baseline": float(series[baseline[0]]) if baseline else None,
        "spread": float(series.max() - series.min()),
    }


def readout(state):
    text = f"best {state['metric']}: {state['best']} ({state['best_value']:.3f}); spread {state['spread']:.3f}"
    if state["baseline"] is not None:
        text += f"; softmax baseline {state['baseline']:.3f}"
    return text


def draw_metric(state):
    """One bar per run (the best one outlined); a dashed line at the baseline. Traces: ``[bars]``."""
    widths = [3 if n == state["best"] else 0 for n in state["names"]]
    fig = go.Figure(go.Bar(x=state["names"], y=state["values"], marker_color=state["colors"],
                           marker_line=dict(width=widths, color="black"), name=state["metric"],
                           text=[f"{v:.3f}" for v in state["values"]], textposition="outside"))
    if state["baseline"] is not None:
        fig.add_hline(y=state["baseline"], line_dash="dash", line_color="gray",
                      annotation_text="softmax<br>baseline", annotation_position="right")  # beside the bars
    fig.update_layout(template="plotly_white", height=400, margin=dict(l=40, r=90, t=60, b=100),
                      title=f"{state['metric']} on the held-out set ({state['order']})",
                      yaxis=dict(range=[0, 1.05], title=state["metric"]))
    return fig


def draw_results(table, metrics=tuple(METRIC_NAMES)):
    """Grouped bars: one group per run, one bar per metric. Traces: one per metric."""
    fig = go.Figure()
    for i, metric in enumerate(metrics):
        fig.add_trace(go.Bar(x=[str(n) for n in table.index], y=table[metric], name=metric,
                             marker_color=CLASS_COLORS[i]))
    fig.update_layout(barmode="group", template="plotly_white", height=400,
                      margin=dict(l=40, r=20, t=60, b=100), yaxis=dict(range=[0, 1], title="score"),
                      title="Retrieval on the held-out set, same backbone, data and budget")
    return fig
