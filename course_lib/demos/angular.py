"""Angular loss (Wang et al. 2017): the pure functions behind lesson 08.

Take a triplet (x_a, x_p, x_n) as a triangle. The triplet loss constrains
*distances*; the angular loss constrains the *angle at the negative*,

    angle_n  <=  alpha,

which is small when x_n is far from both x_a and x_p compared with how far
apart x_a and x_p are. An angle is scale-invariant (a triangle grown by s
keeps its angles) and rotation-invariant. The paper makes the constraint
stable with x_c = (x_a + x_p) / 2, the centre of the circle through x_a and
x_p: with x_m on that circle and on the hyperplane through x_c orthogonal to
x_n - x_c, the angle n' at x_n of the right triangle (x_m, x_c, x_n) has

    tan n' = ||x_a - x_p|| / (2 ||x_n - x_c||),

and n' <= alpha gives the triangle (hinge) form of the loss

    l_ang = [ ||x_a - x_p||^2 - 4 tan^2(alpha) ||x_n - x_c||^2 ]_+ .

The hinge is off iff ||x_n - x_c|| >= ||x_a - x_p|| / (2 tan alpha): the
negative must clear the pair's midpoint by a distance proportional to the
pair's own size. On unit-length embeddings (no global scale to be invariant
to) that is the property that matters: a tight pair and a wide pair of the
same shape get the same verdict, where the triplet loss's absolute margin
does not (:func:`local_size_table`).

Its gradients: d/dx_a = 2 (x_a - x_p) - 2t (x_a + x_p - 2 x_n),
d/dx_p = 2 (x_p - x_a) - 2t (x_a + x_p - 2 x_n), d/dx_n = 4t (x_a + x_p - 2 x_n)
with t = tan^2(alpha) (when the hinge is active; 0 otherwise).

For L2-normalised x the bracket equals f_apn + (2 - 6t), with

    f_apn = 4t (x_a + x_p) . x_n - 2 (1 + t) x_a . x_p,

and the N-pair-angular loss of a positive pair is log(1 + sum_n exp f_apn)
over its negatives (what :func:`course_lib.losses.angular_loss` averages).
alpha is in DEGREES: ``np.tan(45)`` is tan of 45 radians (a porting pitfall),
and ronekko/deep_metric_learning#9 typed ``4 * t + (...)`` for ``4 * t * (...)``.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from course_lib.viz import NEGATIVE_COLOR, POSITIVE_COLOR, add_arrows

__all__ = [
    "tan_squared", "angle_at", "reformulated_angle", "triangle_loss", "triangle_gradients",
    "f_apn", "f_apn_with_typo", "npair_angular_numpy", "triangle_state", "compute", "draw",
    "readout", "angle_boundary", "on_sphere", "local_size_table", "pitfall_table", "ANCHOR", "POSITIVE",
    "SPHERE_SHAPE",
]

#: The toy pair: two points on the unit circle, 90 degrees apart.
ANCHOR = np.array([math.cos(math.radians(135)), math.sin(math.radians(135))])
POSITIVE = np.array([math.cos(math.radians(45)), math.sin(math.radians(45))])


# ------------------------------------------------------------------ formulas
def tan_squared(alpha_degrees):
    """t = tan^2(alpha) for alpha given in degrees."""
    return math.tan(math.radians(alpha_degrees)) ** 2


def angle_at(vertex, u, v):
    """The angle (degrees) at ``vertex`` in the triangle (vertex, u, v)."""
    vertex, u, v = (np.asarray(z, dtype=np.float64) for z in (vertex, u, v))
    e1, e2 = u - vertex, v - vertex
    cosine = e1 @ e2 / (np.linalg.norm(e1) * np.linalg.norm(e2))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def reformulated_angle(a, p, n):
    """n' (degrees): arctan(||x_a - x_p|| / (2 ||x_n - x_c||)), x_c = (x_a + x_p) / 2."""
    a, p, n = (np.asarray(z, dtype=np.float64) for z in (a, p, n))
    c = (a + p) / 2
    return float(np.degrees(np.arctan2(np.linalg.norm(a - p), 2 * np.linalg.norm(n - c))))


def triangle_loss(a, p, n, alpha_degrees):
    """``(bracket, loss)``: ||a - p||^2 - 4t ||n - c||^2 and its hinge [.]_+."""
    a, p, n = (np.asarray(z, dtype=np.float64) for z in (a, p, n))
    c = (a + p) / 2
    bracket = float(np.sum((a - p) ** 2) - 4 * tan_squared(alpha_degrees) * np.sum((n - c) ** 2))
    if abs(bracket) < 1e-12:  # on the boundary up to rounding: call it 0, not "active"
        bracket = 0.0
    return bracket, max(bracket, 0.0)


def triangle_gradients(a, p, n, alpha_degrees):
    """Gradients of the hinge loss w.r.t. a, p, n ([3, dim]; zeros when the hinge is off)."""
    a, p, n = (np.asarray(z, dtype=np.float64) for z in (a, p, n))
    t = tan_squared(alpha_degrees)
    if triangle_loss(a, p, n, alpha_degrees)[0] <= 0:
        return np.zeros((3, len(a)))
    push = a + p - 2 * n
    return np.stack([2 * (a - p) - 2 * t * push, 2 * (p - a) - 2 * t * push, 4 * t * push])


def _unit(z):
    """Rows scaled to unit length; a zero row stays zero (as ``tf.math.l2_normalize`` does)."""
    z = np.asarray(z, dtype=np.float64)
    return z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


def f_apn(a, p, n, alpha_degrees):
    """4t (x_a + x_p) . x_n - 2 (1 + t) x_a . x_p on L2-normalised a, p, n (n may be [k, dim])."""
    t = tan_squared(alpha_degrees)
    a, p, n = _unit(a), _unit(p), _unit(n)
    return 4 * t * (n @ (a + p)) - 2 * (1 + t) * (a @ p)


def f_apn_with_typo(a, p, n, alpha_degrees):
    """The ported bug of ronekko/deep_metric_learning#9: ``4 * t + (x_a + x_p) . x_n`` (a + for a x)."""
    t = tan_squared(alpha_degrees)
    a, p, n = _unit(a), _unit(p), _unit(n)
    return 4 * t + (n @ (a + p)) - 2 * (1 + t) * (a @ p)


def npair_angular_numpy(a, p, negatives, alpha_degrees):
    """log(1 + sum_n exp f_apn) for one positive pair and its negatives [k, dim] (stable)."""
    f = np.atleast_1d(f_apn(a, p, np.atleast_2d(negatives), alpha_degrees))
    top = max(0.0, float(f.max()))
    return float(top + np.log(np.exp(-top) + np.exp(f - top).sum()))


# ------------------------------------------------------------------ widget
def triangle_state(a, p, n, alpha_degrees):
    """Everything the figure and the checks need about one triangle.

    Keys: ``points`` [3, 2] (a, p, n), ``center`` x_c, ``alpha``, ``t``,
    ``angle_n`` (true angle at n), ``angle_n_reformulated`` (n'),
    ``violated`` (angle_n > alpha), ``loss_active`` (n' > alpha, the
    hinge is on), ``bracket``, ``loss`` (hinge form), ``gradients`` [3, 2],
    ``f_apn`` and ``npair_angular`` (on the L2-normalised points, the form
    course_lib trains with), ``unit_points``, and the three circles'
    (centre, radius): ``circle_ap`` (through a and p, centre x_c) and
    ``circle_constraint`` (where n' = alpha: centre x_c, radius ||a-p|| / (2 tan alpha)).
    """
    a, p, n = (np.asarray(z, dtype=np.float64) for z in (a, p, n))
    c = (a + p) / 2
    angle_n = angle_at(n, a, p)
    angle_ref = reformulated_angle(a, p, n)
    bracket, loss = triangle_loss(a, p, n, alpha_degrees)
    half = np.linalg.norm(a - p) / 2
    return {
        "points": np.stack([a, p, n]), "center": c, "alpha": float(alpha_degrees),
        "t": tan_squared(alpha_degrees), "angle_n": angle_n, "angle_n_reformulated": angle_ref,
        "violated": angle_n > alpha_degrees, "loss_active": bracket > 0, "bracket": bracket,
        "loss": loss, "gradients": triangle_gradients(a, p, n, alpha_degrees),
        "f_apn": float(f_apn(a, p, n, alpha_degrees)),
        "npair_angular": npair_angular_numpy(a, p, n, alpha_degrees),
        "unit_points": _unit(np.stack([a, p, n])),
        "circle_ap": (c, half),
        "circle_constraint": (c, half / math.tan(math.radians(alpha_degrees))),
    }


def compute(alpha=45.0, negative_x=1.2, negative_y=-0.6, anchor=None, positive=None):
    """The widget's state: :func:`triangle_state` of the toy pair and a negative at (x, y)."""
    a = ANCHOR if anchor is None else anchor
    p = POSITIVE if positive is None else positive
    return triangle_state(a, p, (negative_x, negative_y), alpha)


def readout(state):
    """One line: the triangle's angle and n' against alpha, the hinge loss, the N-pair-angular loss."""
    alpha = state["alpha"]
    angle = "violated" if state["violated"] else "satisfied"
    loss = "active" if state["loss_active"] else "off"
    return (f"angle at n {state['angle_n']:.1f}° vs alpha {alpha:.0f}°: {angle} · "
            f"n' {state['angle_n_reformulated']:.1f}°: hinge {loss}, loss {state['loss']:.3f} · "
            f"N-pair-angular of the normalised points {state['npair_angular']:.3f}")


def angle_boundary(a, p, alpha_degrees, num=721):
    """x, y lists (None-separated) of the curve where the angle at n equals alpha.

    It is made of two circular arcs through a and p (inscribed angle theorem):
    centres x_c +- d u (u orthogonal to a - p, d = ||a - p|| / (2 tan alpha)),
    radius ||a - p|| / (2 sin alpha). Inside their union the angle exceeds alpha.
    """
    a, p = np.asarray(a, np.float64), np.asarray(p, np.float64)
    c, half = (a + p) / 2, np.linalg.norm(a - p) / 2
    u = np.array([-(p - a)[1], (p - a)[0]]) / (2 * half)
    radius, d = half / math.sin(math.radians(alpha_degrees)), half / math.tan(math.radians(alpha_degrees))
    xs, ys = [], []
    for side in (1, -1):
        centre = c + side * d * u
        theta = np.linspace(0, 2 * np.pi, num)
        ring = centre + radius * np.stack([np.cos(theta), np.sin(theta)], 1)
        keep = (ring - c) @ u * side > 0  # the major arc lies on the centre's side
        for point, kept in zip(ring, keep):
            xs.append(float(point[0]) if kept else None)
            ys.append(float(point[1]) if kept else None)
        xs.append(None)
        ys.append(None)
    return xs, ys


def _circle(centre, radius, num=181):
    theta = np.linspace(0, 2 * np.pi, num)
    return centre[0] + radius * np.cos(theta), centre[1] + radius * np.sin(theta)


def draw(state, arrow_scale=0.15, extent=1.8):
    """The triangle, x_c, the circle through a and p, the two constraint boundaries,
    the unit circle with the normalised negative, and the arrows -gradient (where
    the hinge loss moves each point), in a window of half-width ``extent`` around x_c.

    Trace names: ``triangle``, ``points``, ``circle through a, p``,
    ``n' = alpha (loss boundary)``, ``angle at n = alpha``, ``unit circle``,
    ``n / ||n||``, then the two arrow traces (``move a, p, n (-gradient)``, heads),
    always present and empty where the hinge is off.
    """
    a, p, n = state["points"]
    c = state["center"]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[a[0], p[0], n[0], a[0]], y=[a[1], p[1], n[1], a[1]], mode="lines",
                             name="triangle", line=dict(color="#555", width=1.5)))
    fig.add_trace(go.Scatter(
        x=[a[0], p[0], n[0], c[0]], y=[a[1], p[1], n[1], c[1]], mode="markers+text", name="points",
        text=["a", "p", "n", "c"], textposition=["top left", "top right", "bottom right", "bottom center"],
        marker=dict(size=[13, 13, 13, 7], color=[POSITIVE_COLOR, POSITIVE_COLOR, NEGATIVE_COLOR, "#555"])))
    x, y = _circle(*state["circle_ap"])
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name="circle through a, p",
                             line=dict(color="#999", dash="dot")))
    x, y = _circle(*state["circle_constraint"])
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name="n' = alpha (loss boundary)",
                             line=dict(color=NEGATIVE_COLOR, dash="dash")))
    x, y = angle_boundary(a, p, state["alpha"])
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name="angle at n = alpha",
                             line=dict(color="#9467bd", dash="dashdot")))
    x, y = _circle(np.zeros(2), 1.0)
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name="unit circle", line=dict(color="#ddd")))
    un = state["unit_points"][2]
    fig.add_trace(go.Scatter(x=[un[0]], y=[un[1]], mode="markers", name="n / ||n||",
                             marker=dict(size=11, symbol="circle-open", color=NEGATIVE_COLOR)))
    moving = np.any(state["gradients"] != 0, axis=1)  # no arrow (nor arrowhead) where the loss is off
    add_arrows(fig, state["points"][moving], -state["gradients"][moving], color="black",
               name="move a, p, n (-gradient)", scale=arrow_scale)
    verdict = "violated" if state["violated"] else "satisfied"
    fig.update_layout(
        template="plotly_white", height=540, margin=dict(l=20, r=20, t=60, b=20),
        title=(f"alpha {state['alpha']:.0f}°: angle at n {state['angle_n']:.1f}° ({verdict}), "
               f"n' {state['angle_n_reformulated']:.1f}°, hinge loss {state['loss']:.3f}"),
        xaxis=dict(range=[c[0] - extent, c[0] + extent]),
        yaxis=dict(range=[c[1] - extent, c[1] + extent], scaleanchor="x"))
    return fig


# ------------------------------------------------------------------ checks
def _rotation(degrees):
    r = math.radians(degrees)
    return np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])


def on_sphere(xy):
    """The point of the unit sphere in 3-D at geodesic offset ``xy`` (2-D) from the north pole.

    The exponential map: cos(r) e_z + sin(r) (x, y, 0) / r with r = ||xy||. It keeps
    the distances from the pole exactly and the shape of a small figure nearly, so a
    triangle drawn at size s around the pole is the same triangle, shrunk, on the sphere.
    """
    v = np.array([xy[0], xy[1], 0.0], dtype=np.float64)
    r = np.linalg.norm(v)
    return np.array([0.0, 0.0, math.cos(r)]) + (v * (math.sin(r) / r) if r > 0 else 0.0)


#: The shape of lesson 08's local-size table: a pair 1 apart and a negative below it.
SPHERE_SHAPE = np.array([[-0.5, 0.0], [0.5, 0.0], [0.25, -1.2]])


def local_size_table(sizes=(0.8, 0.4, 0.2, 0.1, 0.05), alpha_degrees=45.0, margin=0.2, shape=None):
    """One triangle shape on the unit sphere at several sizes: which constraint holds? (dict of lists)

    Both losses see the same unit vectors (like the course's embeddings). The angular
    hinge is off iff ||x_n - x_c|| >= ||x_a - x_p|| / (2 tan alpha): the clearance it asks
    of the negative is proportional to the pair's own size. The triplet hinge is off iff
    D(a, n) >= D(a, p) + margin: the same absolute margin for a tight and a wide pair.
    Columns: ``size``, ``D(a,p)``, ``D(a,n)``, ``angle at n``, ``n'`` (degrees),
    ``||n - c||``, ``required ||n - c||``, ``angular holds``, ``D(a,p) - D(a,n) + m``,
    ``triplet holds``.
    """
    shape = SPHERE_SHAPE if shape is None else np.asarray(shape, np.float64)
    rows = {k: [] for k in ("size", "D(a,p)", "D(a,n)", "angle at n", "n'", "||n - c||",
                            "required ||n - c||", "angular holds", "D(a,p) - D(a,n) + m", "triplet holds")}
    for size in sizes:
        a, p, n = (on_sphere(size * z) for z in shape)
        d_ap, d_an = float(np.linalg.norm(a - p)), float(np.linalg.norm(a - n))
        triplet = d_ap - d_an + margin
        values = (float(size), d_ap, d_an, angle_at(n, a, p), reformulated_angle(a, p, n),
                  float(np.linalg.norm(n - (a + p) / 2)), d_ap / (2 * math.tan(math.radians(alpha_degrees))),
                  triangle_loss(a, p, n, alpha_degrees)[0] <= 0, triplet, triplet <= 0)
        for key, value in zip(rows, values):
            rows[key].append(value)
    return rows


def pitfall_table(alphas=(30.0, 36.0, 45.0, 55.0)):
    """t = tan^2(alpha) read as degrees (right) and as radians (the porting bug), per alpha."""
    return {
        "alpha": [float(x) for x in alphas],
        "t (degrees, right)": [tan_squared(x) for x in alphas],
        "t (np.tan(alpha): radians, wrong)": [math.tan(x) ** 2 for x in alphas],
    }
