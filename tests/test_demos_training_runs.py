"""course_lib.demos.training_runs: the run cache, summaries and figures of lesson 05."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from course_lib.demos import training_runs as tr
from course_lib.training import EpochRecord, History

TINY = dict(epochs=2, steps_per_epoch=3, classes_per_batch=4, samples_per_class=4, embedding_dim=8,
            eval_size=100, snapshot_size=40)


@pytest.fixture(scope="module")
def tiny_data():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 30)
    # Class-dependent blobs of pixels, so the network can learn something in a few steps.
    images = rng.integers(0, 60, size=(300, 28, 28), dtype=np.uint8)
    for c in range(10):
        images[labels == c, 2 * c:2 * c + 6, 4:24] = 220
    order = rng.permutation(300)
    train, held = order[:200], order[200:]
    return images[train], labels[train], images[held], labels[held]


@pytest.fixture(scope="module")
def cache(tiny_data):
    runs = tr.RunCache(*tiny_data, **TINY)
    runs.get("semi-hard", 1e-3, 0.2)
    runs.get("hard", 1e-2, 0.2)
    return runs


def fake_history(values, margin=0.2):
    h = History(loss_name="triplet", options=dict(margin=margin))
    for epoch, v in enumerate(values, start=1):
        h.records.append(EpochRecord(epoch, 1.0 - v, 1.0, 0.1 * epoch, 0.2 * epoch, v, {"precision_at_1": v}, 0.5))
    return h


def test_run_key_sorted_and_checked():
    key = tr.run_key("hard", 0.01, 1, epochs=3)
    names = [name for name, _ in key]
    assert names == sorted(names) and dict(key)["margin"] == 1.0 and dict(key)["epochs"] == 3
    assert dict(key)["seed"] == tr.DEFAULTS["seed"]
    assert tr.run_key("hard", 1e-2, 1.0, epochs=3) == key
    with pytest.raises(ValueError, match="Unknown run settings"):
        tr.run_key("hard", 1e-2, 1.0, epoch=3)


def test_cache_trains_once_and_lookup_never_trains(cache):
    assert cache.trained == 2 and len(cache) == 2
    first = cache.get("semi-hard", 1e-3, 0.2)
    assert cache.trained == 2 and cache.get("semi-hard", 0.001, 0.2) is first
    assert cache.lookup("all", 1e-3, 0.2) is None and cache.trained == 2
    assert cache.choices("mining") == ["hard", "semi-hard"]
    assert cache.choices("learning_rate") == [1e-3, 1e-2]
    history = first["history"]
    assert len(history.records) == TINY["epochs"]
    assert (history.options["mining"], history.options["margin"]) == ("semi-hard", 0.2)
    assert len(history.snapshots) == TINY["epochs"] + 1 and history.snapshots[0].shape == (40, 8)


def test_same_settings_same_numbers(tiny_data, cache, capsys):
    again = tr.RunCache(*tiny_data, **TINY).get("semi-hard", 1e-3, 0.2)["history"]
    before = cache.lookup("semi-hard", 1e-3, 0.2)["history"]
    printed = capsys.readouterr().out.splitlines()  # one progress line per trained run
    assert len(printed) == 1 and printed[0].startswith("trained semi-hard, lr=0.001, m=0.2, B=16")
    np.testing.assert_allclose(again["loss"], before["loss"], rtol=1e-5)
    np.testing.assert_allclose(again.snapshots[-1], before.snapshots[-1], rtol=1e-4, atol=1e-6)


def test_summarize_reads_the_last_record(cache):
    run = cache.lookup("hard", 1e-2, 0.2)
    row = tr.summarize(run)
    last = run["history"].records[-1]
    assert (row["mining"], row["learning_rate"], row["margin"]) == ("hard", 0.01, 0.2)
    assert row["loss"] == pytest.approx(last.loss) and row["spread"] == pytest.approx(last.spread)
    assert row["precision_at_1"] == pytest.approx(last.metrics["precision_at_1"])
    assert row["final_precision_at_1"] == pytest.approx(run["history"].final_metrics["precision_at_1"])
    snap = run["history"].snapshots[0]
    centred = snap - snap.mean(axis=0)
    assert row["initial_spread"] == pytest.approx(np.sqrt(np.mean(np.sum(centred**2, axis=1))), rel=1e-5)
    assert row["collapsed"] == (run["history"].collapse is not None)
    table = tr.comparison_table({"a": run, "b": cache.lookup("semi-hard", 1e-3, 0.2)})
    assert list(table.index) == ["a", "b"] and "epoch P@1>=0.9" in table.columns


def test_first_epoch_reaching():
    h = fake_history([0.5, 0.85, 0.93, 0.91])
    assert tr.first_epoch_reaching(h, 0.9) == 3
    assert tr.first_epoch_reaching(h, 0.95) is None
    assert tr.first_epoch_reaching(h, 0.4) == 1


def test_pair_distances_against_loops():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(9, 3)), np.array([0, 1, 0, 2, 1, 0, 2, 2, 1])
    pos, neg = tr.pair_distances(x, y)
    exp_pos = [np.linalg.norm(x[i] - x[j]) for i in range(9) for j in range(i + 1, 9) if y[i] == y[j]]
    exp_neg = [np.linalg.norm(x[i] - x[j]) for i in range(9) for j in range(i + 1, 9) if y[i] != y[j]]
    np.testing.assert_allclose(np.sort(pos), np.sort(exp_pos))
    np.testing.assert_allclose(np.sort(neg), np.sort(exp_neg))
    assert len(pos) + len(neg) == 9 * 8 // 2


def test_run_name():
    s = dict(tr.run_key("hard", 1e-2, 0.2, classes_per_batch=4, samples_per_class=4, l2_normalize=False))
    assert tr.run_name({"settings": s}) == "hard, lr=0.01, m=0.2, B=16, l2_normalize=False"


def test_figures(cache):
    runs = {"semi": cache.lookup("semi-hard", 1e-3, 0.2), "hard": cache.lookup("hard", 1e-2, 0.2)}
    fig = tr.diagnostics_figure(runs)
    # per run: one trace per panel (loss, active fraction, D(a,p), D(a,n), spread) + the margin line
    assert len(tr.DIAGNOSTIC_FIELDS) == 5 and len(fig.data) == 2 * 6
    assert [a.text for a in fig.layout.annotations][1] == "active fraction"
    assert list(fig.data[1].y) == list(runs["semi"]["history"]["active_fraction"])
    spread_trace = fig.data[4]
    assert list(spread_trace.x) == [0, 1, 2]  # epoch 0 from the snapshot before training
    assert spread_trace.y[0] == pytest.approx(tr.initial_spread(runs["semi"]["history"]))
    margin_line = fig.data[5]
    assert list(margin_line.y) == [0.2, 0.2]
    hist = tr.distance_histograms(runs)
    assert len(hist.data) == 4 and all(isinstance(t, go.Histogram) for t in hist.data)
    pos, _ = tr.pair_distances(runs["semi"]["history"].snapshots[-1], runs["semi"]["history"].snapshot_labels)
    assert len(hist.data[0].x) == len(pos)


def test_explorer(cache):
    state = tr.explorer_state(cache, "hard", 1e-2, 0.2)
    assert not state["missing"] and state["run"] is cache.lookup("hard", 1e-2, 0.2)
    assert list(state["others"]) == ["semi-hard, lr=0.001, m=0.2, B=16, embedding_dim=8"]
    fig = tr.explorer_draw(state)
    assert len(fig.data) == 2 * len(tr.EXPLORER_FIELDS)
    assert fig.data[-1].line.width == 3  # the selected run is drawn last, thick
    # the legend says what grey and thick mean, once each; hovering a grey line names its run
    in_legend = [t.name for t in fig.data if t.showlegend]
    assert in_legend == ["other cached runs (hover for the name)", "selected: hard, lr=0.01, m=0.2, B=16, embedding_dim=8"]
    assert "semi-hard, lr=0.001" in fig.data[0].hovertemplate
    assert "hard, lr=0.01, m=0.2" in tr.explorer_readout(state)
    missing = tr.explorer_state(cache, "all", 1e-2, 0.2)
    assert missing["missing"] and "not precomputed" in tr.explorer_readout(missing)
    assert len(tr.explorer_draw(missing).data) == 2 * len(tr.EXPLORER_FIELDS)
    assert cache.trained == 2  # looking never trains


def test_noise_check(cache):
    from course_lib import retrieval

    run = cache.lookup("semi-hard", 1e-3, 0.2)
    h = run["history"]
    result = tr.noise_check(run, noise_std=0.0)
    expected = retrieval.evaluate(h.snapshots[-1], h.snapshot_labels)["precision_at_1"]
    assert result["clean"] == result["noisy"] == pytest.approx(expected)
    drowned = tr.noise_check(run, noise_std=100.0)  # noise far above every distance: chance level
    assert drowned["noisy"] < result["clean"] or result["clean"] <= 0.3


def test_collapse_warning_is_caught_and_printed(tiny_data, monkeypatch, capsys):
    """train()'s RuntimeWarning becomes text in the run and one readable printed line, no raw warning."""
    import warnings

    from course_lib import training

    def fake_train(model, *args, **kwargs):
        warnings.warn("epoch 1: embedding collapsed: spread 0.001 is under 5%", RuntimeWarning, stacklevel=2)
        return fake_history([0.3, 0.2])

    monkeypatch.setattr(training, "train", fake_train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning escaping train_run would fail the test
        runs = tr.RunCache(*tiny_data, **TINY)
        run = runs.get("hard", 1e-2, 0.2)
    assert run["warnings"] == ["epoch 1: embedding collapsed: spread 0.001 is under 5%"]
    out = capsys.readouterr().out
    assert out.count("trained hard, lr=0.01") == 1 and "! train() warns: epoch 1: embedding collapsed" in out


def test_continue_run(cache):
    base = cache.lookup("semi-hard", 1e-3, 0.2)
    weights = [w.copy() for w in base["model"].get_weights()]
    trained = cache.trained
    more = cache.continued(base, "hard", epochs=1)
    assert cache.continued(base, "hard", epochs=1) is more and cache.trained == trained + 1
    assert len(more["history"].records) == 1 and more["history"].options["mining"] == "hard"
    assert more["settings"]["continued_from"] == tr.run_name(base)
    assert tr.run_name(more).endswith("+ 1 epochs hard")
    for before, after in zip(weights, base["model"].get_weights()):
        np.testing.assert_array_equal(before, after)  # the starting run is left as it was
    # it starts where the base run ended: its epoch-0 snapshot is the base run's last one
    np.testing.assert_allclose(more["history"].snapshots[0], base["history"].snapshots[-1], atol=1e-5)


def test_detector_input_matches_the_history(cache):
    run = cache.lookup("hard", 1e-2, 0.2)
    d = tr.detector_input(run)
    h = run["history"]
    assert d["loss"] == pytest.approx(h["loss"]) and d["spread"] == pytest.approx(h["spread"])
    assert d["stuck_at"] == 0.2 and d["initial_spread"] == pytest.approx(tr.initial_spread(h))
    assert set(d) == {"loss", "spread", "mean_positive_distance", "mean_negative_distance", "initial_spread",
                      "stuck_at"}


def snapshot_run(scales, seed=0):
    """A run dict whose snapshots are one point cloud scaled by ``scales`` (1 -> 0.001: a collapse)."""
    rng = np.random.default_rng(seed)
    cloud = rng.normal(size=(30, 8)).astype(np.float32)
    h = History(loss_name="triplet", options={})
    h.snapshots, h.snapshot_labels = [cloud * s for s in scales], np.repeat(np.arange(3), 10)
    return {"history": h}


def test_animation_state_shares_one_scale_and_shows_the_collapse():
    state = tr.animation_state({"collapse": snapshot_run([1.0, 0.1, 0.001]), "healthy": snapshot_run([1.0, 1.0, 1.2])})
    assert state["names"] == ["collapse", "healthy"]
    collapse, healthy = state["frames"]["collapse"], state["frames"]["healthy"]
    assert len(collapse) == len(healthy) == 3 and collapse[0].shape == (30, 2)
    size = lambda xy: float(np.sqrt(np.mean(np.sum((xy - xy.mean(0)) ** 2, 1))))  # noqa: E731
    assert size(collapse[-1]) < 0.01 * size(collapse[0]) and size(healthy[-1]) > size(healthy[0])
    np.testing.assert_allclose(np.array(state["spreads"]["collapse"]) / state["spreads"]["collapse"][0],
                               [1.0, 0.1, 0.001], rtol=1e-4)
    assert state["extent"] >= max(np.abs(f).max() for f in healthy)
    with pytest.raises(ValueError, match="snapshot_size"):
        tr.animation_state({"none": {"history": History(loss_name="triplet", options={})}})


def test_animation_draw_has_frames_a_slider_and_a_play_button():
    state = tr.animation_state({"collapse": snapshot_run([1.0, 0.1, 0.001]), "healthy": snapshot_run([1.0, 1.0, 1.2])})
    fig = tr.animation_draw(state)
    assert isinstance(fig, go.Figure) and len(fig.frames) == 3
    assert len(fig.data) == 6 and {t.xaxis for t in fig.data} == {"x", "x2"}   # 3 classes x 2 panels
    assert [s.label for s in fig.layout.sliders[0].steps] == ["before training", "epoch 1", "epoch 2"]
    assert fig.layout.updatemenus[0].buttons[0].label == "play"
    last = f"collapse: spread {state['spreads']['collapse'][-1]:.3g}"
    assert fig.frames[-1].layout.title.text.startswith(f"epoch 2: {last}")
    assert fig.layout.xaxis.range == fig.layout.xaxis2.range


def fake_claims():
    """Two miners x two seeds, MAP@R per epoch known by construction."""
    runs = {}
    for mining, base in (("random", 0.5), ("semi-hard", 0.7)):
        for seed in (0, 1):
            curve = [base + 0.1 * e + 0.02 * seed for e in range(3)]
            runs[f"miners/noise=0/{mining}/seed={seed}"] = {
                "per_epoch": {"map_at_r": curve, "active_fraction": [0.5, 0.4, 0.3]},
                "final": {"map_at_r": curve[-1], "precision_at_1": 0.9},
                "collapse": "epoch 1: collapsed" if mining == "random" and seed == 1 else None}
    return {"runs": runs, "commands": ["python benchmarks/claims.py"]}


def test_claim_curves_and_means_over_seeds():
    claims = fake_claims()
    mean, std, seeds = tr.claim_curve(claims, "miners/noise=0", "semi-hard")
    np.testing.assert_allclose(mean, [0.71, 0.81, 0.91]) and np.testing.assert_allclose(std, 0.01)
    assert seeds == 2
    assert tr.claim_mean(claims, "miners/noise=0", "random") == pytest.approx(0.71)
    assert tr.claim_mean(claims, "miners/noise=0", "random", epoch=1) == pytest.approx(0.51)
    with pytest.raises(ValueError, match="benchmarks/claims.py"):
        tr.claim_runs(claims, "miners/noise=0.2", "random")


def test_claims_table_and_figure():
    claims = fake_claims()
    table = tr.claims_table(claims, {"clean": "miners/noise=0"}, ["random", "semi-hard"])
    assert table.loc["clean", "semi-hard"] == "0.910 ± 0.010"
    assert table.loc["clean", "random"] == "0.710 ± 0.010 (collapsed in 1/2)"
    fig = tr.claims_figure(claims, {"clean": "miners/noise=0", "again": "miners/noise=0"}, ["random", "semi-hard"],
                           first_epoch={"again": 2})
    assert len(fig.data) == 4 and list(fig.data[2].x) == [2, 3, 4] and list(fig.data[0].x) == [1, 2, 3]
    np.testing.assert_allclose(fig.data[1].error_y.array, 0.01)
    two_fields = tr.claims_figure(claims, {"MAP@R": "miners/noise=0", "active": ("miners/noise=0", "active_fraction")},
                                  ["semi-hard"], shared_yaxes=False)
    np.testing.assert_allclose(two_fields.data[1].y, [0.5, 0.4, 0.3])


def test_committed_claims_file_has_what_the_lesson_reads():
    claims = tr.load_claims()
    assert claims["commands"] and claims["date"]
    for mining in ("random", "all", "semi-hard", "hard"):
        for noise in ("0", "0.2"):
            runs = tr.claim_runs(claims, f"miners/noise={noise}", mining)
            assert all(len(r["per_epoch"]["map_at_r"]) == 4 and r["cpu_seconds"] > 0 for r in runs)


def test_regimes_table_differences():
    claims = fake_claims()
    for run in claims["runs"].values():
        run["per_epoch"]["spread"], run["initial_spread"] = [0.5, 0.01, 0.02], 0.25
    table = tr.regimes_table(claims, {"clean": "miners/noise=0"}, first="random", second="semi-hard")
    assert list(table.loc["clean", ["after epoch 1", "after epoch 3", "final"]]) == [-0.2, -0.2, -0.2]
    assert table.loc["clean", "spread min"] == 0.01 and table.loc["clean", "collapsed"] == "1/2"
    assert table.loc["clean", "spread min / before"] == 0.04


def test_claims_summary_means_over_seeds():
    claims = fake_claims()
    for run in claims["runs"].values():
        run["per_epoch"]["spread"], run["initial_spread"] = [0.5, 0.01, 0.02], 0.25
    table = tr.claims_summary(claims, {"semi": ("miners/noise=0", "semi-hard"), "rand": ("miners/noise=0", "random")})
    assert list(table.index) == ["semi", "rand"]
    assert table.loc["semi", "MAP@R"] == pytest.approx(0.91) and table.loc["semi", "MAP@R std"] == pytest.approx(0.01)
    assert table.loc["semi", "P@1"] == pytest.approx(0.9) and table.loc["semi", "active fraction"] == pytest.approx(0.3)
    assert table.loc["semi", "spread"] == pytest.approx(0.02) and table.loc["semi", "spread min"] == pytest.approx(0.01)
    assert table.loc["semi", "spread before"] == pytest.approx(0.25)
    assert table.loc["semi", "collapsed"] == "0/2" and table.loc["rand", "collapsed"] == "1/2"
