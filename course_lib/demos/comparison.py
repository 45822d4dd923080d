"""All the losses under one protocol, over seeds: lesson 09 reads the results table.

"A Metric Learning Reality Check" (Musgrave, Belongie, Lim, ECCV 2020) found
that many reported gains came from unequal comparisons: different networks,
embedding sizes, augmentation, budgets, hyper-parameters tuned on the test
set, and single runs. Its protocol: the same backbone, data, batches and
budget for every loss, retrieval of classes held out from training, several
seeds, and metrics that look at the whole ranking (MAP@R, R-precision).

``benchmarks/results.py`` runs that protocol in miniature through the course's
command line (every loss, 3 seeds, MNIST and Fashion-MNIST, seen and unseen
classes) and commits ``benchmarks/results/results.json``. The functions here
read it:

* :func:`load_results` reads and checks the JSON;
* :func:`summary_table` gives mean and std over the seeds of one metric, one
  row per configuration; :func:`results_table` all metrics as "mean +- std";
* :func:`separated` is the course's rule for "a real difference": two means
  further apart than the sum of their standard deviations (their mean +- std
  bars do not overlap). With 3 seeds this is a rough screen, not a test;
* :func:`error_bar_view` / :func:`draw_error_bars` / :func:`readout` drive the
  dataset / split / metric selector; :func:`seen_unseen_table` /
  :func:`draw_seen_unseen` show what moving to unseen classes costs;
* :func:`ranking`, :func:`explain_ranking`, :func:`count_above` check the
  learner's predictions.
"""

from __future__ import annotations

import json
from pathlib import Path

import plotly.graph_objects as go

from course_lib.viz import CLASS_COLORS

__all__ = ["METRIC_NAMES", "BASELINES", "LABELS", "SPLITS", "load_results", "summary_table",
           "results_table", "separated", "error_bar_view", "readout", "draw_error_bars",
           "seen_unseen_table", "draw_seen_unseen", "beats", "ranking", "explain_ranking", "count_above",
           "explain_above"]

#: Table column -> the key of :func:`course_lib.retrieval.evaluate`.
METRIC_NAMES = {"P@1": "precision_at_1", "R-precision": "r_precision", "MAP@R": "map_at_r"}
#: Rows that train nothing: raw pixels and the embedding network at its initial weights.
BASELINES = ("pixels", "untrained")
#: Display names of the configurations of benchmarks/results.py.
LABELS = {
    "pixels": "raw pixels", "untrained": "untrained network",
    "contrastive": "contrastive", "triplet-all": "triplet (batch-all)", "triplet-hard": "triplet (hard)",
    "triplet-semi-hard": "triplet (semi-hard)", "triplet-random": "triplet (random)",
    "npairs": "N-pairs", "angular": "angular", "supcon": "SupCon", "multi-similarity": "multi-similarity",
    "cross_entropy": "softmax CE",
}
SPLITS = ("unseen", "seen")
DATASET_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
_GRAY = "#9e9e9e"  # the baselines
_COLORS = [c for c in CLASS_COLORS if c.lower() != "#7f7f7f"] + ["#393b79"]  # the losses: no gray


def load_results(path):
    """The results JSON written by benchmarks/results.py, checked: ``{"meta", "runs", "summary"}``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path must be the results.json of benchmarks/results.py; no file {path}")
    results = json.loads(path.read_text(encoding="utf-8"))
    missing = [key for key in ("meta", "runs", "summary") if key not in results]
    if missing:
        raise ValueError(f"path: {path} is not a results table (no {', '.join(missing)})")
    return results


def _entries(results, dataset, split):
    entries = [e for e in results["summary"] if e["dataset"] == dataset and e["split"] == split]
    if not entries:
        known = sorted({(e["dataset"], e["split"]) for e in results["summary"]})
        raise ValueError(f"dataset/split must be one of {known}, got ({dataset!r}, {split!r})")
    order = [*BASELINES, *results["meta"]["configs"]]
    return sorted(entries, key=lambda e: order.index(e["config"]) if e["config"] in order else len(order))


def _metric_key(metric):
    if metric not in METRIC_NAMES:
        raise ValueError(f"metric must be one of {list(METRIC_NAMES)}, got {metric!r}")
    return METRIC_NAMES[metric]


def summary_table(results, dataset, split, metric="MAP@R"):
    """One metric over the seeds: a DataFrame indexed by configuration.

    Columns ``mean``, ``std`` (sample std, ddof = 1), ``seeds`` (how many),
    ``values`` (one per seed), ``label`` (display name), ``baseline`` (trains nothing).
    """
    import pandas as pd

    key = _metric_key(metric)
    rows = [{"config": e["config"], "label": LABELS.get(e["config"], e["config"]),
             "mean": e[key]["mean"], "std": e[key]["std"], "seeds": len(e[key]["values"]),
             "values": e[key]["values"], "baseline": e["config"] in BASELINES}
            for e in _entries(results, dataset, split)]
    return pd.DataFrame(rows).set_index("config")


def results_table(results, dataset, split):
    """Every metric as "mean +- std" text, and the mean training seconds: the table to read."""
    import pandas as pd

    rows = []
    for e in _entries(results, dataset, split):
        row = {"configuration": LABELS.get(e["config"], e["config"])}
        row.update({name: f"{e[key]['mean']:.3f} ± {e[key]['std']:.3f}" for name, key in METRIC_NAMES.items()})
        row["train s"] = round(e["train_seconds"]["mean"], 1)
        rows.append(row)
    return pd.DataFrame(rows).set_index("configuration")


def separated(mean_a, std_a, mean_b, std_b):
    """True when |mean_a - mean_b| > std_a + std_b: the mean +- std bars do not overlap."""
    return abs(mean_a - mean_b) > std_a + std_b


def error_bar_view(results, dataset="fashion_mnist", split="unseen", metric="MAP@R", order="table"):
    """State of the selector: mean +- std of one metric per configuration.

    Keys: ``dataset``, ``split``, ``metric``, ``order``, ``names``, ``labels``,
    ``means``, ``stds``, ``colors`` (gray for the baselines), ``best`` (the
    highest mean), ``tied`` (configurations not separated from the best, best
    included), ``pixels`` (mean, std) or None, ``above_pixels`` and
    ``below_pixels`` (trained configurations separated from pixels, above / below).
    """
    table = summary_table(results, dataset, split, metric)
    colors = _colors(table)  # fixed by the table's order, so a configuration keeps its colour when sorted
    if order == "sorted":
        table = table.sort_values("mean", ascending=False, kind="stable")
    elif order != "table":
        raise ValueError(f"order must be 'table' or 'sorted', got {order!r}")
    best = str(table["mean"].idxmax())
    b = table.loc[best]
    tied = [n for n, r in table.iterrows() if not separated(r["mean"], r["std"], b["mean"], b["std"])]
    pixels = (float(table.at["pixels", "mean"]), float(table.at["pixels", "std"])) if "pixels" in table.index else None
    trained = table[~table["baseline"]]
    above = below = []
    if pixels is not None:
        apart = [n for n, r in trained.iterrows() if separated(r["mean"], r["std"], *pixels)]
        above = [n for n in apart if trained.at[n, "mean"] > pixels[0]]
        below = [n for n in apart if trained.at[n, "mean"] < pixels[0]]
    return {
        "dataset": dataset, "split": split, "metric": metric, "order": order,
        "names": [str(n) for n in table.index], "labels": list(table["label"]),
        "means": table["mean"].to_numpy(float), "stds": table["std"].to_numpy(float),
        "colors": [colors[n] for n in table.index],
        "best": best, "tied": tied, "pixels": pixels, "above_pixels": above, "below_pixels": below,
        "seeds": int(table["seeds"].max()),
    }


def _colors(table):
    """``{name: colour}``: gray for the baselines, one colour per trained configuration by its row."""
    trained = [n for n in table.index if not table.at[n, "baseline"]]
    return {n: _GRAY if n not in trained else _COLORS[trained.index(n) % len(_COLORS)] for n in table.index}


def readout(state):
    """One line: the best, what it is tied with, and how many trained runs beat pixels beyond the spread."""
    label = LABELS.get(state["best"], state["best"])
    tied = [LABELS.get(n, n) for n in state["tied"] if n != state["best"]]
    text = f"best {state['metric']}: {label}"
    text += f", tied within the spread with {len(tied)} more" if tied else ", separated from every other"
    if state["pixels"] is not None:
        trained = sum(1 for n in state["names"] if n not in BASELINES)
        text += (f"; above pixels beyond the spread: {len(state['above_pixels'])} of {trained} trained, "
                 f"below: {len(state['below_pixels'])}")
    return text


def draw_error_bars(state):
    """One bar per configuration with its mean +- std (error bar); a dashed line at pixels. Traces: ``[bars]``."""
    fig = go.Figure(go.Bar(
        x=state["labels"], y=state["means"], marker_color=state["colors"], name=state["metric"],
        error_y=dict(type="data", array=state["stds"], visible=True, color="black", thickness=1.5),
        text=[f"{m:.3f}" for m in state["means"]], textposition="inside", insidetextanchor="start",
        customdata=state["stds"], hovertemplate="%{x}: %{y:.3f} ± %{customdata:.3f}<extra></extra>"))
    if state["pixels"] is not None:
        fig.add_hline(y=state["pixels"][0], line_dash="dash", line_color="gray",
                      annotation_text="pixels", annotation_position="right")
    split = {"unseen": "classes held out from training", "seen": "classes seen in training"}.get(
        state["split"], state["split"])
    fig.update_layout(
        template="plotly_white", height=420, margin=dict(l=50, r=70, t=60, b=110), showlegend=False,
        title=(f"{state['metric']} on {DATASET_NAMES.get(state['dataset'], state['dataset'])}, {split}: "
               f"mean ± std over {state['seeds']} seeds"),
        yaxis=dict(range=[0, 1.05], title=state["metric"]))
    return fig


def seen_unseen_table(results, dataset, metric="MAP@R"):
    """Seen and unseen classes side by side: columns ``seen``, ``seen std``, ``unseen``,
    ``unseen std`` and ``unseen / pixels`` (the unseen mean over raw pixels' unseen mean)."""
    seen = summary_table(results, dataset, "seen", metric)
    unseen = summary_table(results, dataset, "unseen", metric)
    table = seen[["label"]].copy()
    table["seen"], table["seen std"] = seen["mean"], seen["std"]
    table["unseen"], table["unseen std"] = unseen["mean"], unseen["std"]
    table["unseen / pixels"] = unseen["mean"] / unseen.at["pixels", "mean"]
    return table


def draw_seen_unseen(table, metric="MAP@R"):
    """Grouped bars: seen and unseen classes per configuration, with error bars. Traces: ``[seen, unseen]``."""
    fig = go.Figure()
    for i, split in enumerate(("seen", "unseen")):
        fig.add_trace(go.Bar(x=list(table["label"]), y=table[split], name=f"{split} classes",
                             marker_color=CLASS_COLORS[i],
                             error_y=dict(type="data", array=table[f"{split} std"], visible=True)))
    fig.update_layout(barmode="group", template="plotly_white", height=420,
                      margin=dict(l=50, r=20, t=60, b=110), yaxis=dict(range=[0, 1.05], title=metric),
                      title=f"{metric}: classes seen in training vs held out (mean ± std over seeds)",
                      legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    return fig


def ranking(table, names):
    """``names`` ordered by their mean in ``table`` (a :func:`summary_table`), best first."""
    unknown = [n for n in names if n not in table.index]
    if unknown:
        raise ValueError(f"names must be rows of the table {list(table.index)}, got {unknown}")
    return sorted(names, key=lambda n: -table.at[n, "mean"])


def explain_ranking(table, names):
    """One sentence per neighbouring pair of the measured ranking: the gap, and whether it exceeds the spread."""
    order = ranking(table, names)
    parts = []
    for a, b in zip(order, order[1:]):
        ra, rb = table.loc[a], table.loc[b]
        verdict = ("beyond the spread" if separated(ra["mean"], ra["std"], rb["mean"], rb["std"])
                   else "within the spread: their order is not established")
        parts.append(f"{LABELS.get(a, a)} {ra['mean']:.3f} ± {ra['std']:.3f} > {LABELS.get(b, b)} "
                     f"{rb['mean']:.3f} ± {rb['std']:.3f} ({verdict})")
    return "; ".join(parts) + "."


def beats(table):
    """For each row of a :func:`summary_table`: the rows it beats beyond the spread (higher mean,
    bars apart), as a DataFrame with columns ``mean``, ``std``, ``beats`` (labels) and ``count``."""
    out = table[["label", "mean", "std"]].copy()
    wins = [[other for other, r in table.iterrows()
             if row["mean"] > r["mean"] and separated(row["mean"], row["std"], r["mean"], r["std"])]
            for _, row in table.iterrows()]
    out["beats"] = [", ".join(LABELS.get(n, n) for n in w) for w in wins]
    out["count"] = [len(w) for w in wins]
    return out


def count_above(state):
    """How many trained configurations beat raw pixels beyond the spread (``state`` of :func:`error_bar_view`)."""
    return len(state["above_pixels"])


def explain_above(state):
    """One sentence: which trained configurations beat pixels beyond the spread, which fall below."""
    def names(keys):
        return ", ".join(LABELS.get(n, n) for n in keys) or "none"

    mean, std = state["pixels"]
    return (f"Raw pixels score {mean:.3f} ± {std:.3f}. Above them beyond the spread: {names(state['above_pixels'])}. "
            f"Below them beyond the spread: {names(state['below_pixels'])}. The others are within the spread of pixels.")
