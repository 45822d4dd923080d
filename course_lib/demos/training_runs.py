"""Lesson 05, training with hard / semi-hard / batch-all mining, and collapse: runs, tables, figures.

Training is the slow part of the lesson, so it happens once per setting:
:class:`RunCache` trains a run the first time its settings are asked for
(:func:`train_run`, fixed seeds: the same settings give the same numbers) and
keeps it in a dict keyed by the settings, and prints one line per run as it
ends (:func:`run_line`: time, precision@1, spread, and the collapse warning of
:func:`course_lib.training.train` as readable text, caught by :func:`train_run`).
:func:`continue_run` trains a copy of a finished run further with another
miner. The interactive explorer
(:func:`explorer_state` / :func:`explorer_draw`) only *chooses among* the
runs already in the cache: moving a dropdown never trains. What needs several
seeds, too slow for the lesson, was measured by ``benchmarks/claims.py`` with
the same :func:`train_run`; :func:`load_claims` reads the committed numbers and
:func:`claims_figure`, :func:`claims_table`, :func:`claims_summary` and
:func:`regimes_table` show them as means over the seeds.

What the figures read from each run's :class:`course_lib.training.History`
(per epoch, means over the epoch's batches):

* ``loss`` of the triplet loss  [D(a, p) - D(a, n) + m]_+  over the mined triplets;
* ``active_fraction``: share of the mined triplets with D(a, p) - D(a, n) + m > 0;
* ``mean_positive_distance`` / ``mean_negative_distance`` over the batch's pairs;
* ``spread`` = sqrt(mean_i ||x_i - mean(x)||^2) of held-out embeddings;
* ``precision_at_1`` on held-out images.

Collapse (f(x) = constant): every distance goes to 0, so the spread falls
to ~0 and, with every triplet at D(a, p) = D(a, n), the loss sits at
exactly m. :func:`course_lib.training.detect_collapse` flags it and
:func:`course_lib.training.train` warns; :func:`summarize` reports it.
"""

from __future__ import annotations

import time

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from course_lib import viz
from course_lib.viz import distances_numpy

#: Settings of a run besides (mining, learning_rate, margin); RunCache defaults.
DEFAULTS = dict(
    epochs=4,
    steps_per_epoch=30,
    classes_per_batch=8,
    samples_per_class=8,
    embedding_dim=64,
    l2_normalize=True,
    soft=False,
    eval_size=1000,
    snapshot_size=300,
    seed=0,
)

#: The fields of the explorer figure: (History key, panel title).
EXPLORER_FIELDS = (
    ("loss", "loss"), ("active_fraction", "active fraction"), ("precision_at_1", "precision@1"),
    ("mean_positive_distance", "mean D(a, p)"), ("mean_negative_distance", "mean D(a, n)"),
    ("spread", "spread of the embedding"),
)


def run_key(mining, learning_rate, margin, **settings):
    """The cache key of a run: its settings as a sorted tuple of (name, value)."""
    full = dict(DEFAULTS, **settings, mining=mining, learning_rate=float(learning_rate), margin=float(margin))
    unknown = set(full) - set(DEFAULTS) - {"mining", "learning_rate", "margin"}
    if unknown:
        raise ValueError(f"Unknown run settings {sorted(unknown)}; known: {sorted(DEFAULTS)}.")
    return tuple(sorted(full.items()))


def _fit(model, data, s, mining, epochs, seed):
    """:func:`course_lib.training.train` with the run settings ``s``; (History, collapse warnings).

    The collapse ``RuntimeWarning`` that ``train`` raises is caught here and
    returned as text, so the lesson can print it readably.
    """
    import warnings

    from course_lib import training

    options = dict(mining=mining, margin=s["margin"])
    if s["soft"]:
        options["soft"] = True
    train_images, train_labels, eval_images, eval_labels = data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        history = training.train(
            model, train_images, train_labels, loss="triplet", loss_options=options,
            eval_images=eval_images, eval_labels=eval_labels, epochs=epochs,
            classes_per_batch=s["classes_per_batch"], samples_per_class=s["samples_per_class"],
            steps_per_epoch=s["steps_per_epoch"], learning_rate=s["learning_rate"], seed=seed,
            eval_size=s["eval_size"], snapshot_size=s["snapshot_size"], progress=False,
        )
    return history, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def _network(s):
    import keras

    from course_lib import models

    keras.utils.set_random_seed(s["seed"])
    return models.embedding_network(s["embedding_dim"], l2_normalize=s["l2_normalize"], seed=s["seed"])


def train_run(train_images, train_labels, eval_images, eval_labels, mining="semi-hard",
              learning_rate=1e-3, margin=0.2, **settings):
    """Train a fresh :func:`course_lib.models.embedding_network` with the triplet loss.

    Seeds are fixed (``keras.utils.set_random_seed(seed)`` before the
    weights are drawn, and the same P x K batch plan), so the same settings
    give the same History on the same machine. Returns ``dict(settings,
    history, seconds, warnings, model)``: ``warnings`` holds the text of
    the collapse warning of :func:`course_lib.training.train`, if any.
    """
    s = dict(run_key(mining, learning_rate, margin, **settings))
    start = time.perf_counter()
    model = _network(s)
    history, caught = _fit(model, (train_images, train_labels, eval_images, eval_labels), s, s["mining"],
                           s["epochs"], s["seed"])
    return dict(settings=s, history=history, seconds=time.perf_counter() - start, warnings=caught, model=model)


def continue_run(run, train_images, train_labels, eval_images, eval_labels, mining, epochs=2, learning_rate=None):
    """Train a copy of ``run``'s network ``epochs`` more epochs with another ``mining``.

    Same learning rate (unless ``learning_rate`` is given), margin, batch shape and seed as ``run``, so the
    held-out subsets measured per epoch are the same images as ``run``'s
    (and the batch plan starts over: a second pass over the same batches).
    ``run`` itself is left unchanged. Returns a run dict like :func:`train_run`, with
    ``settings["continued_from"]`` naming the starting run.
    """
    s = dict(run["settings"])
    if learning_rate is not None:
        s["learning_rate"] = float(learning_rate)
    start = time.perf_counter()
    model = _network(s)
    model.set_weights(run["model"].get_weights())
    history, caught = _fit(model, (train_images, train_labels, eval_images, eval_labels), s, mining,
                           epochs, s["seed"])
    s.update(mining=mining, epochs=epochs, continued_from=run_name(run))
    return dict(settings=s, history=history, seconds=time.perf_counter() - start, warnings=caught, model=model)


def run_line(run):
    """One line per run for the lesson's progress: name, time, P@1, spread, collapse."""
    row = summarize(run)
    text = (f"trained {run_name(run):<34} {row['seconds']:5.1f} s   P@1 {row['precision_at_1']:.3f}   "
            f"spread {row['initial_spread']:.3f} -> {row['spread']:.3f}")
    for message in run.get("warnings", []):
        text += f"\n   ! train() warns: {message}"
    return text


class RunCache:
    """Runs keyed by their settings: train once, look up afterwards.

    ``cache.get(mining, learning_rate, margin, **settings)`` trains when the
    run is missing; ``cache.lookup(...)`` never trains (None when missing).
    ``cache.continued(run, mining, epochs)`` trains ``run`` further
    (:func:`continue_run`), once. ``defaults`` override :data:`DEFAULTS` for
    every run of this cache. ``trained`` counts the training runs actually
    made; with ``verbose`` each prints one line (:func:`run_line`) as it ends.
    """

    def __init__(self, train_images, train_labels, eval_images, eval_labels, verbose=True, **defaults):
        run_key("semi-hard", 1e-3, 0.2, **defaults)  # fail now on an unknown setting
        self.data = (train_images, train_labels, eval_images, eval_labels)
        self.defaults = defaults
        self.verbose = verbose
        self.runs = {}
        self.continuations = {}
        self.trained = 0

    def key(self, mining, learning_rate, margin, **settings):
        return run_key(mining, learning_rate, margin, **{**self.defaults, **settings})

    def get(self, mining, learning_rate, margin, **settings):
        key = self.key(mining, learning_rate, margin, **settings)
        if key not in self.runs:
            self.runs[key] = self._report(train_run(*self.data, **dict(key)))
        return self.runs[key]

    def continued(self, run, mining, epochs=2):
        key = (tuple(sorted((k, v) for k, v in run["settings"].items())), mining, epochs)
        if key not in self.continuations:
            self.continuations[key] = self._report(continue_run(run, *self.data, mining=mining, epochs=epochs))
        return self.continuations[key]

    def _report(self, run):
        self.trained += 1
        if self.verbose:
            print(run_line(run), flush=True)
        return run

    def lookup(self, mining, learning_rate, margin, **settings):
        return self.runs.get(self.key(mining, learning_rate, margin, **settings))

    def __len__(self):
        return len(self.runs)

    def choices(self, name):
        """Sorted distinct values of setting ``name`` among the cached runs."""
        return sorted({dict(key)[name] for key in self.runs})


# ------------------------------------------------------------ summaries
def run_name(run):
    """A short label: "hard, lr=0.01, m=0.2, B=64" (plus the settings that differ from DEFAULTS)."""
    s = run["settings"]
    text = f"{s['mining']}, lr={s['learning_rate']:g}, m={s['margin']:g}, B={s['classes_per_batch'] * s['samples_per_class']}"
    for name in ("l2_normalize", "soft", "embedding_dim"):
        if s[name] != DEFAULTS[name]:
            text += f", {name}={s[name]}"
    if "continued_from" in s:
        text = f"{s['continued_from']} + {s['epochs']} epochs {s['mining']}"
    return text


def initial_spread(history):
    """Spread of the held-out snapshot before training (NaN without snapshots)."""
    from course_lib.training import spread

    return spread(history.snapshots[0]) if history.snapshots else float("nan")


def detector_input(run):
    """A run's History as the plain dict lesson 05's ``collapse_detector`` exercise reads.

    Per-epoch lists ``loss``, ``spread``, ``mean_positive_distance``,
    ``mean_negative_distance``; floats ``initial_spread`` (before training)
    and ``stuck_at`` (the loss at gap 0: the margin, or ln 2 with the soft margin).
    """
    h, s = run["history"], run["settings"]
    fields = ("loss", "spread", "mean_positive_distance", "mean_negative_distance")
    return {**{f: [float(v) for v in h[f]] for f in fields}, "initial_spread": initial_spread(h),
            "stuck_at": float(np.log(2.0)) if s["soft"] else float(s["margin"])}


def first_epoch_reaching(history, threshold, field="precision_at_1"):
    """First epoch whose ``field`` is >= ``threshold``, or None: "how fast did it converge"."""
    for epoch, value in enumerate(history[field], start=1):
        if value >= threshold:
            return epoch
    return None


def summarize(run, threshold=0.9):
    """One row of numbers for a run (the last epoch's records and the final evaluation).

    ``precision_at_1`` is the last epoch's, on the fixed subset of
    ``eval_size`` held-out images that every epoch is measured on (the
    learning curves); ``final_precision_at_1`` is measured once after
    training on *all* the held-out images: same network, more queries.
    """
    history, s = run["history"], run["settings"]
    last = history.records[-1]
    return dict(
        mining=s["mining"], learning_rate=s["learning_rate"], margin=s["margin"],
        loss=float(last.loss), active_fraction=float(last.active_fraction),
        mean_positive_distance=float(last.mean_positive_distance),
        mean_negative_distance=float(last.mean_negative_distance),
        spread=float(last.spread), initial_spread=initial_spread(history),
        precision_at_1=float(last.metrics.get("precision_at_1", np.nan)),
        final_precision_at_1=float(history.final_metrics.get("precision_at_1", np.nan)),
        epoch_reaching=first_epoch_reaching(history, threshold),
        collapsed=history.collapse is not None, collapse=history.collapse or "",
        seconds=float(run["seconds"]),
    )


def comparison_table(runs, threshold=0.9):
    """A pandas DataFrame, one row per run: ``runs`` maps a name to a run dict."""
    import pandas as pd

    rows = {name: summarize(run, threshold) for name, run in runs.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table.rename(columns={"epoch_reaching": f"epoch P@1>={threshold}"})


def histories(runs):
    """``{name: History}`` for :func:`course_lib.viz.learning_curves`."""
    return {name: run["history"] for name, run in runs.items()}


def pair_distances(embeddings, labels):
    """Distances of all positive and of all negative pairs (i < j) of a snapshot (NumPy)."""
    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    d = distances_numpy(x)
    upper = np.triu(np.ones_like(d, dtype=bool), k=1)
    same = y[:, None] == y[None, :]
    return d[upper & same], d[upper & ~same]


def noise_check(run, noise_std=1e-3, seed=0):
    """Precision@1 of the run's last held-out snapshot, clean and with Gaussian noise added.

    A shrunken (collapsed) embedding may still rank well, but only through
    differences smaller than ``noise_std``: noise of that size (rounding,
    quantisation, an approximate index) wipes the ranking out, while a
    healthy embedding does not notice. Returns ``dict(clean, noisy, noise_std)``.
    """
    from course_lib import retrieval

    h = run["history"]
    x = np.asarray(h.snapshots[-1], dtype=np.float32)
    noisy = x + np.random.default_rng(seed).normal(scale=noise_std, size=x.shape).astype(np.float32)
    score = lambda v: float(retrieval.evaluate(v, h.snapshot_labels)["precision_at_1"])  # noqa: E731
    return dict(clean=score(x), noisy=score(noisy), noise_std=float(noise_std))


# ------------------------------------------------------------ figures
#: The panels of :func:`diagnostics_figure`: (History key, title); "spread" also plots epoch 0.
DIAGNOSTIC_FIELDS = (
    ("loss", "loss (dotted: margin m)"), ("active_fraction", "active fraction"),
    ("mean_positive_distance", "mean D(a, p)"), ("mean_negative_distance", "mean D(a, n)"),
    ("spread", "spread (epoch 0: before)"),
)


def diagnostics_figure(runs):
    """Collapse diagnostics per run, one panel per :data:`DIAGNOSTIC_FIELDS` entry.

    The loss panel has a dotted line at each run's margin; the spread panel
    starts at epoch 0 (before training) when the runs kept snapshots.
    """
    fig = make_subplots(rows=1, cols=len(DIAGNOSTIC_FIELDS), subplot_titles=[t for _, t in DIAGNOSTIC_FIELDS],
                        horizontal_spacing=0.05)
    for i, (name, run) in enumerate(runs.items()):
        h, color = run["history"], viz.CLASS_COLORS[i % len(viz.CLASS_COLORS)]
        epochs = list(range(1, len(h.records) + 1))
        for col, (field, _) in enumerate(DIAGNOSTIC_FIELDS, start=1):
            xs, ys = epochs, list(h[field])
            if field == "spread" and h.snapshots:
                xs, ys = [0] + epochs, [initial_spread(h)] + ys
            fig.add_trace(go.Scatter(x=xs, y=ys, name=name, legendgroup=name, showlegend=col == 1,
                                     mode="lines+markers", line=dict(color=color)), row=1, col=col)
        margin = run["settings"]["margin"]
        fig.add_trace(go.Scatter(x=[epochs[0], epochs[-1]], y=[margin, margin], mode="lines", showlegend=False,
                                 legendgroup=name, line=dict(color=color, dash="dot", width=1),
                                 hoverinfo="skip", name=f"{name}: m"), row=1, col=1)
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_yaxes(range=[0, 1.05], row=1, col=2)
    fig.update_layout(template="plotly_white", height=360, margin=dict(l=40, r=20, t=60, b=40),
                      legend=dict(orientation="h", y=-0.25, x=0))
    return fig


def distance_histograms(runs, bins=40):
    """Histograms of the held-out snapshot's pair distances after training, one panel per run.

    A healthy embedding separates the two histograms; a collapsed one piles
    both at 0.
    """
    names = list(runs)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, shared_yaxes=True)
    top = max(float(np.max(pair_distances(r["history"].snapshots[-1], r["history"].snapshot_labels)[1]))
              for r in runs.values())
    for col, name in enumerate(names, start=1):
        h = runs[name]["history"]
        pos, neg = pair_distances(h.snapshots[-1], h.snapshot_labels)
        for values, label, color in ((pos, "positive pairs", viz.POSITIVE_COLOR),
                                     (neg, "negative pairs", viz.NEGATIVE_COLOR)):
            fig.add_trace(go.Histogram(x=values, name=label, legendgroup=label, showlegend=col == 1,
                                       marker_color=color, opacity=0.6, histnorm="probability",
                                       xbins=dict(start=0, end=top * 1.02, size=top * 1.02 / bins)),
                          row=1, col=col)
    fig.update_xaxes(title_text="distance", range=[0, top * 1.02])
    fig.update_layout(barmode="overlay", template="plotly_white", height=320,
                      title="Pair distances of held-out images after training",
                      margin=dict(l=40, r=20, t=80, b=40))
    return fig


# ------------------------------------------------------------ explorer
def explorer_state(cache, mining="semi-hard", learning_rate=1e-3, margin=0.2):
    """Pick a cached run (never trains). ``missing`` tells when none matches."""
    run = cache.lookup(mining, learning_rate, margin)
    state = dict(mining=mining, learning_rate=float(learning_rate), margin=float(margin), missing=run is None,
                 others={run_name(r): r for r in cache.runs.values() if r is not run})
    if run is None:
        state["message"] = (f"not precomputed: mining={mining!r}, learning_rate={learning_rate:g}, "
                            f"margin={margin:g}; train it with runs.get({mining!r}, {learning_rate:g}, {margin:g})")
        return state
    state.update(run=run, summary=summarize(run))
    return state


def explorer_readout(state):
    if state["missing"]:
        return state["message"]
    s = state["summary"]
    text = (f"{s['mining']}, lr={s['learning_rate']:g}, m={s['margin']:g}: loss {s['loss']:.3f}, "
            f"active {s['active_fraction']:.2f}, P@1 {s['precision_at_1']:.3f}, spread {s['spread']:.3f}")
    return text + (" | COLLAPSED" if s["collapsed"] else "")


def explorer_draw(state):
    """Six panels (loss, active, P@1, D(a,p), D(a,n), spread): the chosen run in colour, the others grey.

    The legend names the selected run and says what the grey lines are;
    hovering a grey line names its run.
    """
    fig = make_subplots(rows=2, cols=3, subplot_titles=[title for _, title in EXPLORER_FIELDS],
                        vertical_spacing=0.16)
    lines = [(name, run, dict(color="#cccccc", width=1), "other cached runs (hover for the name)")
             for name, run in state["others"].items()]
    if not state["missing"]:
        lines.append(("selected", state["run"], dict(color=viz.CLASS_COLORS[0], width=3),
                      f"selected: {run_name(state['run'])}"))
    shown = set()
    for name, run, style, group in lines:
        h = run["history"]
        epochs = list(range(1, len(h.records) + 1))
        for i, (field, _) in enumerate(EXPLORER_FIELDS):
            fig.add_trace(go.Scatter(x=epochs, y=list(h[field]), mode="lines", line=style, name=group,
                                     legendgroup=group, showlegend=group not in shown,
                                     hovertemplate=f"{run_name(run)}<br>epoch %{{x}}: %{{y:.3f}}<extra></extra>"),
                          row=i // 3 + 1, col=i % 3 + 1)
            shown.add(group)
    if state["missing"]:
        fig.add_annotation(text=state["message"], showarrow=False, x=0.5, y=1.12, xref="paper", yref="paper",
                           font=dict(color=viz.NEGATIVE_COLOR))
    title = "not precomputed" if state["missing"] else explorer_readout(state)
    fig.update_xaxes(title_text="epoch", row=2, dtick=1)
    fig.update_layout(template="plotly_white", height=560, title=title, margin=dict(l=40, r=20, t=90, b=40),
                      legend=dict(orientation="h", y=-0.15, x=0))
    return fig


# ------------------------------------------------------------ collapse animation
def animation_state(runs):
    """PCA views of each run's held-out snapshots (before training, then after each epoch).

    ``runs`` maps a panel name to a run dict that kept snapshots (``snapshot_size`` > 0).
    Each run gets one 2-D PCA fitted on all its snapshots together, so its
    axes stay fixed and the motion is the embedding's; both panels share one
    scale, so a collapse shrinks to a point while a healthy run keeps its size.
    Returns ``dict(names, labels, frames, spreads, extent)``: ``frames[name]`` a
    list of [N, 2] arrays, ``spreads[name]`` the spread of each snapshot
    (RMS distance to the centroid in the full embedding, not the 2-D view).
    """
    from course_lib.projection import pca
    from course_lib.training import spread

    frames, spreads, labels = {}, {}, {}
    for name, run in runs.items():
        h = run["history"]
        if not h.snapshots:
            raise ValueError(f"run {name!r} kept no snapshots: train it with snapshot_size > 0.")
        flat = pca(np.concatenate(h.snapshots), dim=2)
        frames[name] = np.split(flat, len(h.snapshots))
        spreads[name] = [spread(s) for s in h.snapshots]
        labels[name] = np.asarray(h.snapshot_labels).reshape(-1)
    extent = max(float(np.max(np.abs(f))) for fs in frames.values() for f in fs) * 1.05
    return dict(names=list(runs), labels=labels, frames=frames, spreads=spreads, extent=extent)


def _frame_label(i):
    return "before training" if i == 0 else f"epoch {i}"


def animation_draw(state):
    """One panel per run, a play button and a slider over the frames (plotly frames)."""
    names = state["names"]
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.06)

    def traces(i):
        out = []
        for col, name in enumerate(names, start=1):
            xy, y = state["frames"][name][min(i, len(state["frames"][name]) - 1)], state["labels"][name]
            axis = "" if col == 1 else str(col)
            out += [go.Scatter(x=xy[y == c, 0], y=xy[y == c, 1], mode="markers", name=f"digit {c}",
                               legendgroup=str(c), showlegend=col == 1, xaxis=f"x{axis}", yaxis=f"y{axis}",
                               marker=dict(size=5, color=viz.class_color(c)))
                    for c in np.unique(y)]
        return out

    def caption(i):
        return " | ".join(f"{n}: spread {state['spreads'][n][min(i, len(state['spreads'][n]) - 1)]:.3g}"
                          for n in names)

    count = max(len(f) for f in state["frames"].values())
    frames = [go.Frame(data=traces(i), name=str(i),
                       layout=dict(title=dict(text=f"{_frame_label(i)}: {caption(i)}"))) for i in range(count)]
    fig.add_traces(traces(0))
    fig.frames = frames
    steps = [dict(method="animate", label=_frame_label(i),
                  args=[[str(i)], dict(mode="immediate", frame=dict(duration=600, redraw=True))])
             for i in range(count)]
    extent = state["extent"]
    fig.update_xaxes(range=[-extent, extent], title_text="PC 1")
    fig.update_yaxes(range=[-extent, extent], title_text="PC 2")
    fig.update_layout(
        title=f"{_frame_label(0)}: {caption(0)}", template="plotly_white", height=500,
        margin=dict(l=50, r=20, t=90, b=110),
        updatemenus=[dict(type="buttons", x=0, y=-0.2, xanchor="left", buttons=[
            dict(label="play", method="animate",
                 args=[None, dict(frame=dict(duration=800, redraw=True), fromcurrent=True)])])],
        sliders=[dict(active=0, steps=steps, x=0.1, len=0.9, y=-0.12)],
    )
    return fig


# ------------------------------------------------------------ measured claims (benchmarks/claims.py)
#: Where ``python benchmarks/claims.py`` writes its runs (3 seeds, too slow for the lesson).
CLAIMS_PATH = "benchmarks/results/claims.json"


def load_claims(path=None):
    """The committed results of ``benchmarks/claims.py`` (a dict: ``runs``, ``command``, ``date``, ...)."""
    import json
    import os

    if path is None:
        path = os.path.join(os.path.dirname(__file__), "..", "..", CLAIMS_PATH)
    with open(path) as f:
        return json.load(f)


def claim_runs(claims, prefix, mining):
    """The runs ``"{prefix}/{mining}/seed=S"`` of ``claims``, one per seed, in seed order."""
    head = f"{prefix}/{mining}/seed="
    found = {int(k[len(head):]): r for k, r in claims["runs"].items() if k.startswith(head)}
    if not found:
        raise ValueError(f"no run {head}* in the claims file; rerun: python benchmarks/claims.py")
    return [found[s] for s in sorted(found)]


def claim_curve(claims, prefix, mining, field="map_at_r"):
    """(mean, std, seeds) of ``field`` per epoch over the seeds: two [epochs] arrays and a count."""
    values = np.array([r["per_epoch"][field] for r in claim_runs(claims, prefix, mining)], dtype=float)
    return values.mean(axis=0), values.std(axis=0), len(values)


def miner_color(mining, fallback=0):
    """One colour per miner in every figure of the measured claims."""
    order = ("random", "all", "semi-hard", "hard")
    index = order.index(mining) if mining in order else fallback
    return viz.CLASS_COLORS[index % len(viz.CLASS_COLORS)]


def claims_figure(claims, panels, minings, field="map_at_r", title=None, first_epoch=None, shared_yaxes=True):
    """One panel per ``panels`` entry, one line per miner: mean over seeds, error bars = std over seeds.

    ``panels`` maps a panel title to a run prefix (plotting ``field``) or to a
    (prefix, field) pair. ``first_epoch`` maps a panel title to the number of
    its first epoch (a warm start continues after the epochs of its starting run).
    """
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=list(panels), shared_yaxes=shared_yaxes,
                        horizontal_spacing=0.05)
    for col, (panel, entry) in enumerate(panels.items(), start=1):
        prefix, field = entry if isinstance(entry, tuple) else (entry, field)
        for i, mining in enumerate(minings):
            mean, std, seeds = claim_curve(claims, prefix, mining, field)
            start = (first_epoch or {}).get(panel, 1)
            fig.add_trace(go.Scatter(
                x=list(range(start, start + len(mean))), y=mean, error_y=dict(type="data", array=std),
                mode="lines+markers", name=f"{mining} (mean of {seeds} seeds)", legendgroup=mining,
                showlegend=col == 1, line=dict(color=miner_color(mining, i))), row=1, col=col)
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_layout(template="plotly_white", height=360, title=title, margin=dict(l=50, r=20, t=80, b=40),
                      legend=dict(orientation="h", y=-0.25, x=0))
    return fig


def claims_table(claims, rows, minings, field="map_at_r"):
    """A DataFrame: one row per ``rows`` entry (name -> prefix), per miner "mean ± std" of the final ``field``.

    The final value is measured after training on all 2,000 held-out images;
    a run flagged as collapsed gets a "(collapsed in k/n)" note.
    """
    import pandas as pd

    table = {}
    for name, prefix in rows.items():
        cells = {}
        for mining in minings:
            runs = claim_runs(claims, prefix, mining)
            values = np.array([r["final"][field] for r in runs])
            collapsed = sum(r["collapse"] is not None for r in runs)
            cells[mining] = f"{values.mean():.3f} ± {values.std():.3f}" + (
                f" (collapsed in {collapsed}/{len(runs)})" if collapsed else "")
        table[name] = cells
    return pd.DataFrame.from_dict(table, orient="index")


def claim_mean(claims, prefix, mining, field="map_at_r", epoch=None):
    """Mean over seeds of the final ``field`` (``epoch=None``) or of its value after ``epoch`` (1-based)."""
    runs = claim_runs(claims, prefix, mining)
    if epoch is None:
        return float(np.mean([r["final"][field] for r in runs]))
    return float(np.mean([r["per_epoch"][field][epoch - 1] for r in runs]))


def _collapse_stats(runs):
    """Over seeds: mean smallest spread, mean (smallest spread / spread before) and "k/n" collapsed."""
    return dict(spread_min=float(np.mean([min(r["per_epoch"]["spread"]) for r in runs])),
                spread_min_share=float(np.mean([min(r["per_epoch"]["spread"]) / r["initial_spread"] for r in runs])),
                collapsed=f"{sum(r['collapse'] is not None for r in runs)}/{len(runs)}")


def claims_summary(claims, rows):
    """A DataFrame, one row per ``rows`` entry (name -> (prefix, mining)): means over the seeds.

    Columns: "MAP@R" and "MAP@R std" (final, all 2,000 held-out images;
    std over seeds), "P@1" (final), "active fraction" and "spread" of the
    last epoch, "spread before" (before training), "spread min" (smallest
    over the epochs) and "collapsed" (in how many seeds ``train`` flagged it).
    """
    import pandas as pd

    table = {}
    for name, (prefix, mining) in rows.items():
        runs = claim_runs(claims, prefix, mining)
        final = np.array([r["final"]["map_at_r"] for r in runs])
        stats = _collapse_stats(runs)
        last = {f: float(np.mean([r["per_epoch"][f][-1] for r in runs])) for f in ("active_fraction", "spread")}
        table[name] = {"MAP@R": final.mean(), "MAP@R std": final.std(),
                       "P@1": float(np.mean([r["final"]["precision_at_1"] for r in runs])),
                       "active fraction": last["active_fraction"],
                       "spread before": float(np.mean([r["initial_spread"] for r in runs])),
                       "spread": last["spread"], "spread min": stats["spread_min"], "collapsed": stats["collapsed"]}
    return pd.DataFrame.from_dict(table, orient="index")


def regimes_table(claims, regimes, first="hard", second="semi-hard"):
    """Per regime (name -> prefix): ``first`` minus ``second`` in MAP@R after each epoch (mean over seeds).

    Columns "after epoch k" (the curves' 1,000 held-out images), "final" (all
    2,000), "spread min" (``first``'s smallest spread over its epochs, mean
    over seeds: the dip that shows fragility), "spread min / before" (the same
    dip as a share of the spread before training, mean over seeds: comparable
    between unit-norm and unnormalised embeddings) and "collapsed" (in how many
    seeds ``train`` flagged ``first``).
    """
    import pandas as pd

    rows = {}
    for name, prefix in regimes.items():
        a, b = claim_curve(claims, prefix, first)[0], claim_curve(claims, prefix, second)[0]
        stats = _collapse_stats(claim_runs(claims, prefix, first))
        row = {f"after epoch {k}": round(float(x - y), 3) for k, (x, y) in enumerate(zip(a, b), start=1)}
        row["final"] = round(claim_mean(claims, prefix, first) - claim_mean(claims, prefix, second), 3)
        row["spread min"] = round(stats["spread_min"], 3)
        row["spread min / before"] = round(stats["spread_min_share"], 3)
        row["collapsed"] = stats["collapsed"]
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")
