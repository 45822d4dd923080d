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
runs already in the cache: moving a dropdown never trains.

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


def continue_run(run, train_images, train_labels, eval_images, eval_labels, mining, epochs=2):
    """Train a copy of ``run``'s network ``epochs`` more epochs with another ``mining``.

    Same learning rate, margin, batch shape and seed as ``run``, so the
    held-out subsets measured per epoch are the same images as ``run``'s
    (and the batch plan starts over: a second pass over the same batches).
    ``run`` itself is left unchanged. Returns a run dict like :func:`train_run`, with
    ``settings["continued_from"]`` naming the starting run.
    """
    s = dict(run["settings"])
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
