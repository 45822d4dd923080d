"""course_lib.demos.angular (lesson 08) against geometry by hand, finite differences and the library."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest

import reference
from course_lib import losses
from course_lib.demos import angular as da

RNG = np.random.default_rng(80)
TRIANGLES = [RNG.normal(size=(3, 2)) for _ in range(6)]
ALPHAS = [30.0, 45.0, 55.0]


def law_of_cosines(vertex, u, v):
    a, b, c = np.linalg.norm(u - vertex), np.linalg.norm(v - vertex), np.linalg.norm(u - v)
    return math.degrees(math.acos((a * a + b * b - c * c) / (2 * a * b)))


# ------------------------------------------------------------ geometry
@pytest.mark.parametrize("tri", TRIANGLES)
def test_angles_of_a_triangle(tri):
    a, p, n = tri
    angles = [da.angle_at(a, p, n), da.angle_at(p, a, n), da.angle_at(n, a, p)]
    assert math.isclose(sum(angles), 180.0, rel_tol=1e-9)
    assert math.isclose(angles[2], law_of_cosines(n, a, p), rel_tol=1e-9)


@pytest.mark.parametrize("tri", TRIANGLES)
def test_reformulated_angle_definition(tri):
    a, p, n = tri
    c = (a + p) / 2
    expected = math.degrees(math.atan(np.linalg.norm(a - p) / (2 * np.linalg.norm(n - c))))
    assert math.isclose(da.reformulated_angle(a, p, n), expected, rel_tol=1e-9)


@pytest.mark.parametrize("distance", [0.1, 0.5, 1.0, 3.0])
def test_on_the_bisector_n_prime_is_half_the_angle(distance):
    a, p = np.array([-0.4, 0.2]), np.array([0.4, 0.2])
    n = np.array([0.0, 0.2 - distance])
    assert math.isclose(da.angle_at(n, a, p), 2 * da.reformulated_angle(a, p, n), rel_tol=1e-9)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_boundaries(alpha):
    state = da.compute(alpha=alpha)
    a, p = da.ANCHOR, da.POSITIVE
    # On the loss boundary circle, n' = alpha and the hinge bracket is 0.
    centre, radius = state["circle_constraint"]
    for theta in np.linspace(0, 2 * np.pi, 7):
        n = centre + radius * np.array([math.cos(theta), math.sin(theta)])
        assert math.isclose(da.reformulated_angle(a, p, n), alpha, rel_tol=1e-9)
        assert abs(da.triangle_loss(a, p, n, alpha)[0]) < 1e-9
    # On the drawn curve "angle at n = alpha", the angle at n is alpha.
    xs, ys = da.angle_boundary(a, p, alpha, num=91)
    points = [np.array([x, y]) for x, y in zip(xs, ys) if x is not None]
    assert len(points) > 60
    for n in points:
        if min(np.linalg.norm(n - a), np.linalg.norm(n - p)) < 1e-9:
            continue  # the arcs end at a and p, where the triangle is degenerate
        assert math.isclose(da.angle_at(n, a, p), alpha, abs_tol=1e-6)


# ------------------------------------------------------------ losses and gradients
@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("tri", TRIANGLES)
def test_triangle_loss_and_gradients(tri, alpha):
    a, p, n = tri
    c = (a + p) / 2
    t = math.tan(math.radians(alpha)) ** 2
    bracket, loss = da.triangle_loss(a, p, n, alpha)
    assert math.isclose(bracket, np.sum((a - p) ** 2) - 4 * t * np.sum((n - c) ** 2), rel_tol=1e-12)
    assert loss == max(bracket, 0.0)
    grads = da.triangle_gradients(a, p, n, alpha)
    h = 1e-6
    numeric = np.zeros((3, 2))
    for i in range(3):
        for j in range(2):
            plus, minus = tri.copy(), tri.copy()
            plus[i, j] += h
            minus[i, j] -= h
            numeric[i, j] = (da.triangle_loss(*plus, alpha)[1] - da.triangle_loss(*minus, alpha)[1]) / (2 * h)
    np.testing.assert_allclose(grads, numeric, atol=1e-5)


def test_gradient_directions_when_active():
    state = da.compute(45.0, 0.2, 0.3)
    a, p, n = state["points"]
    move = -state["gradients"]
    away = n - state["center"]
    cross = move[2][0] * away[1] - move[2][1] * away[0]
    assert np.isclose(cross, 0.0) and move[2] @ away > 0   # n leaves x_c radially
    assert state["loss_active"] and not np.any(da.compute(45.0, 1.2, -0.6)["gradients"])


@pytest.mark.parametrize("alpha", ALPHAS)
def test_unit_vector_identity(alpha):
    t = da.tan_squared(alpha)
    for _ in range(5):
        a, p, n = RNG.normal(size=(3, 6))
        ua, up, un = (z / np.linalg.norm(z) for z in (a, p, n))
        bracket = da.triangle_loss(ua, up, un, alpha)[0]
        assert math.isclose(bracket, da.f_apn(a, p, n, alpha) + 2 - 6 * t, rel_tol=1e-9, abs_tol=1e-12)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_npair_angular_matches_reference_and_library(alpha):
    for k_neg in (1, 3):
        x = RNG.normal(size=(2 + k_neg, 5))
        labels = [4, 4] + list(range(10, 10 + k_neg))
        ours = da.npair_angular_numpy(x[0], x[1], x[2:], alpha)
        swapped = da.npair_angular_numpy(x[1], x[0], x[2:], alpha)
        assert math.isclose(ours, swapped, rel_tol=1e-12)   # f is symmetric in a and p
        assert math.isclose(ours, reference.angular_loss(labels, x, alpha), rel_tol=1e-9)
        assert math.isclose(ours, float(losses.angular_loss(labels, x, alpha_degrees=alpha)), rel_tol=1e-5)


def test_npair_angular_is_stable_for_large_f():
    a = np.array([1.0, 0.0])
    value = da.npair_angular_numpy(a, a, np.array([[1.0, 0.0]] * 3), 80.0)   # f ~ 4t * 2 - 2(1+t): large
    f = da.f_apn(a, a, np.array([1.0, 0.0]), 80.0)
    assert math.isfinite(value) and math.isclose(value, f + math.log(3), rel_tol=1e-9)


def test_typo_makes_the_push_on_negatives_independent_of_alpha():
    a, p = da.ANCHOR, da.POSITIVE
    n1, n2 = np.array([1.0, -0.5]), np.array([0.2, 1.0])
    typo = [da.f_apn_with_typo(a, p, n2, al) - da.f_apn_with_typo(a, p, n1, al) for al in (20.0, 40.0, 70.0)]
    right = [da.f_apn(a, p, n2, al) - da.f_apn(a, p, n1, al) for al in (20.0, 40.0, 70.0)]
    assert np.allclose(typo, typo[0]) and not np.allclose(right, right[0])


def test_degrees_not_radians():
    assert math.isclose(da.tan_squared(45.0), 1.0)
    table = da.pitfall_table((30.0, 45.0))
    assert table["alpha"] == [30.0, 45.0]
    assert np.allclose(table["t (degrees, right)"], [1 / 3, 1.0])
    assert np.allclose(table["t (np.tan(alpha): radians, wrong)"], [math.tan(30.0) ** 2, math.tan(45.0) ** 2])


# ------------------------------------------------------------ state, local size, figure
def test_state_flags_and_consistency():
    for xy in [(1.2, -0.6), (0.2, 0.3), (0.15, 0.45), (0.0, 0.0), (0.0, -0.5), (-1.2, 1.4)]:
        for alpha in (25.0, 45.0, 60.0):
            s = da.compute(alpha, *xy)
            assert s["violated"] == (s["angle_n"] > alpha)
            assert s["loss_active"] == (s["angle_n_reformulated"] > alpha) == (s["loss"] > 0)
            expected_norms = [1.0, 1.0, 1.0 if any(xy) else 0.0]   # a zero vector stays zero
            np.testing.assert_allclose(np.linalg.norm(s["unit_points"], axis=1), expected_norms)
            assert math.isfinite(s["npair_angular"])
            assert math.isclose(s["npair_angular"], math.log1p(math.exp(s["f_apn"])), rel_tol=1e-9)
    assert "hinge active" in da.readout(da.compute(45.0, 0.2, 0.3))
    assert "hinge off" in da.readout(da.compute(45.0, 1.2, -0.6))


def test_zero_negative_gives_no_nan():
    s = da.compute(45.0, 0.0, 0.0)
    assert np.all(np.isfinite(s["unit_points"])) and math.isfinite(s["f_apn"])
    # The origin sees a and p (90 degrees apart on the unit circle) at a right angle (Thales),
    # and at alpha = 45 the loss boundary is the circle through a and p: exactly on it, not active.
    assert math.isclose(s["angle_n"], 90.0) and s["bracket"] == 0.0 and not s["loss_active"]


def test_on_sphere_is_the_exponential_map():
    for xy in ([0.0, 0.0], [0.3, -0.4], [1.0, 2.0]):
        z = da.on_sphere(xy)
        assert math.isclose(np.linalg.norm(z), 1.0, rel_tol=1e-12)
        # geodesic distance from the pole = ||xy||
        assert math.isclose(math.acos(np.clip(z[2], -1, 1)), np.linalg.norm(xy), abs_tol=1e-9)


def test_local_size_table():
    """Same unit vectors for both losses; the angular constraint keeps its verdict as the
    triangle shrinks (its required clearance scales with ||a - p||), the triplet margin does not."""
    sizes = (0.8, 0.4, 0.1, 0.02)
    table = da.local_size_table(sizes, alpha_degrees=45.0, margin=0.2)
    assert table["size"] == list(sizes)
    for i, size in enumerate(sizes):
        a, p, n = (da.on_sphere(size * z) for z in da.SPHERE_SHAPE)
        d_ap, d_an = np.linalg.norm(a - p), np.linalg.norm(a - n)
        assert math.isclose(table["D(a,p)"][i], d_ap) and math.isclose(table["D(a,n)"][i], d_an)
        assert math.isclose(table["required ||n - c||"][i], d_ap / 2)          # tan 45 = 1
        assert table["angular holds"][i] == (table["||n - c||"][i] >= d_ap / 2)
        assert table["triplet holds"][i] == (d_ap + 0.2 <= d_an)
        assert math.isclose(table["D(a,p) - D(a,n) + m"][i], d_ap - d_an + 0.2)
    assert all(table["angular holds"]) and table["triplet holds"] == [True, False, False, False]
    # nearly the same shape at every size: angles within 2.5 degrees
    assert np.ptp(table["angle at n"]) < 2.5 and np.ptp(table["n'"]) < 1.5
    # the required clearance is proportional to the pair's size
    ratio = np.array(table["required ||n - c||"]) / np.array(table["D(a,p)"])
    assert np.allclose(ratio, ratio[0])


def test_draw():
    state = da.compute(45.0, 0.2, 0.3)
    fig = da.draw(state)
    assert isinstance(fig, go.Figure)
    names = [t.name for t in fig.data]
    assert names[:7] == ["triangle", "points", "circle through a, p", "n' = alpha (loss boundary)",
                         "angle at n = alpha", "unit circle", "n / ||n||"]
    assert names[7].startswith("move")
    np.testing.assert_allclose(fig.data[1].x[:3], state["points"][:, 0])
    arrow_x = [v for v in fig.data[7].x if v is not None]
    ends = state["points"][:, 0] - 0.15 * state["gradients"][:, 0]
    np.testing.assert_allclose(arrow_x[1::2], ends)
    assert f"hinge loss {state['loss']:.3f}" in fig.layout.title.text and state["loss"] > 1.0
    # Hinge off: the arrow traces stay (same trace layout) but hold no arrow.
    off = da.draw(da.compute(45.0, 1.2, -0.6))
    assert [t.name for t in off.data] == names and len(off.data[7].x) == 0 and len(off.data[8].x) == 0


def test_at_45_degrees_the_hinge_is_thales():
    """alpha = 45: n' > 45 iff n is inside the circle with diameter ap iff the angle at n exceeds 90."""
    for n in RNG.uniform(-2, 2, size=(200, 2)):
        s = da.compute(45.0, *n)
        if abs(s["angle_n"] - 90.0) > 1e-6:
            assert s["loss_active"] == (s["angle_n"] > 90.0)
