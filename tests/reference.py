"""Slow, loop-by-loop NumPy (float64) references for the ranking losses.

Every function here is written directly from the definitions in
docs/definitions.md, with explicit Python loops over anchors,
positives and negatives and no vectorised tricks, so that a reader can check
each line against the papers.  Nothing here imports ``course_lib``.

Notation (docs/definitions.md): batch of B embeddings x_i with labels y_i;
D(i, j) the chosen distance; P(i, j): y_i == y_j and i != j (positive pair);
N(i, j): y_i != y_j (negative pair); m > 0 the margin.

Tie-breaking: the reference miners take the lowest index among equal
distances.  The library is free to break ties differently, so mined indices
are only compared on tie-free random data (loss values never depend on it).
"""

from __future__ import annotations

import math

import numpy as np

METRICS = ("euclidean", "squared_euclidean", "cosine")
STRATEGIES = ("all", "hard", "semi-hard")  # deterministic miners; "random" is checked by random_candidates


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _as_arrays(labels, embeddings):
    labels = np.asarray(labels).reshape(-1)  # (B,) or (B, 1) -> (B,)
    x = np.asarray(embeddings, dtype=np.float64)
    assert x.ndim == 2 and x.shape[0] == labels.shape[0]
    return labels, x


def _dot(u, v):
    total = 0.0
    for k in range(len(u)):
        total += float(u[k]) * float(v[k])
    return total


def _norm(u):
    return math.sqrt(_dot(u, u))


def softplus(z):
    """log(1 + exp(z)), written to stay finite for large |z|."""
    if z > 0:
        return z + math.log1p(math.exp(-z))
    return math.log1p(math.exp(z))


def is_positive(labels, i, j):
    """P(i, j): same label and i != j."""
    return i != j and labels[i] == labels[j]


def is_negative(labels, i, j):
    """N(i, j): different label."""
    return labels[i] != labels[j]


# ---------------------------------------------------------------------------
# distances
# ---------------------------------------------------------------------------
def distance(u, v, metric="euclidean"):
    """Distance between two vectors, directly from its definition."""
    if metric == "euclidean":
        return math.sqrt(sum((float(a) - float(b)) ** 2 for a, b in zip(u, v)))
    if metric == "squared_euclidean":
        return sum((float(a) - float(b)) ** 2 for a, b in zip(u, v))
    if metric == "cosine":
        cos = _dot(u, v) / (_norm(u) * _norm(v))
        return max(0.0, 1.0 - cos)  # 1 - cos can round to -1e-16
    raise ValueError(f"unknown metric {metric!r}")


def pairwise_distances(embeddings, metric="euclidean"):
    """[B, B] matrix of D(i, j) with an exactly zero diagonal."""
    x = np.asarray(embeddings, dtype=np.float64)
    b = x.shape[0]
    d = np.zeros((b, b), dtype=np.float64)
    for i in range(b):
        for j in range(b):
            if i != j:
                d[i, j] = distance(x[i], x[j], metric)
    return d


def cross_distances(queries, gallery, metric="euclidean"):
    """[Q, G] matrix of D(q, g); no diagonal zeroing."""
    q = np.asarray(queries, dtype=np.float64)
    g = np.asarray(gallery, dtype=np.float64)
    d = np.zeros((q.shape[0], g.shape[0]), dtype=np.float64)
    for i in range(q.shape[0]):
        for j in range(g.shape[0]):
            d[i, j] = distance(q[i], g[j], metric)
    return d


# ---------------------------------------------------------------------------
# masks and miners (lists of (a, p, n) triplets)
# ---------------------------------------------------------------------------
def positive_mask(labels):
    labels = np.asarray(labels).reshape(-1)
    b = len(labels)
    return np.array([[is_positive(labels, i, j) for j in range(b)] for i in range(b)])


def negative_mask(labels):
    labels = np.asarray(labels).reshape(-1)
    b = len(labels)
    return np.array([[is_negative(labels, i, j) for j in range(b)] for i in range(b)])


def mine_all(labels, dist):
    """Every valid (a, p, n), in lexicographic order of (a, p, n)."""
    labels = np.asarray(labels).reshape(-1)
    b = len(labels)
    triplets = []
    for a in range(b):
        for p in range(b):
            if not is_positive(labels, a, p):
                continue
            for n in range(b):
                if is_negative(labels, a, n):
                    triplets.append((a, p, n))
    return triplets


def mine_hard(labels, dist):
    """Batch-hard (Hermans et al. 2017): per anchor with >= 1 positive and
    >= 1 negative, the farthest positive and the closest negative."""
    labels = np.asarray(labels).reshape(-1)
    b = len(labels)
    triplets = []
    for a in range(b):
        hardest_p, hardest_n = None, None
        for p in range(b):
            if is_positive(labels, a, p):
                if hardest_p is None or dist[a, p] > dist[a, hardest_p]:
                    hardest_p = p
        for n in range(b):
            if is_negative(labels, a, n):
                if hardest_n is None or dist[a, n] < dist[a, hardest_n]:
                    hardest_n = n
        if hardest_p is not None and hardest_n is not None:
            triplets.append((a, hardest_p, hardest_n))
    return triplets


def mine_semi_hard(labels, dist):
    """TF Addons semi-hard: per ordered positive pair (a, p) whose anchor has
    a negative, the closest negative n with D(a, n) > D(a, p) (strictly); if
    no negative is farther than the positive, the farthest negative."""
    labels = np.asarray(labels).reshape(-1)
    b = len(labels)
    triplets = []
    for a in range(b):
        negatives = [n for n in range(b) if is_negative(labels, a, n)]
        if not negatives:
            continue
        for p in range(b):
            if not is_positive(labels, a, p):
                continue
            closest_farther = None
            for n in negatives:
                if dist[a, n] > dist[a, p]:
                    if closest_farther is None or dist[a, n] < dist[a, closest_farther]:
                        closest_farther = n
            if closest_farther is not None:
                triplets.append((a, p, closest_farther))
                continue
            farthest = None
            for n in negatives:
                if farthest is None or dist[a, n] > dist[a, farthest]:
                    farthest = n
            triplets.append((a, p, farthest))
    return triplets


MINERS = {"all": mine_all, "hard": mine_hard, "semi-hard": mine_semi_hard}


def random_candidates(labels):
    """What "random" (no mining) may draw: {anchor: (its positives, its negatives)}.

    Every anchor with >= 1 positive and >= 1 negative draws exactly one
    triplet (a, p, n), p uniformly among its positives and n uniformly among
    its negatives, independently. Anchors missing either draw nothing.
    """
    labels = np.asarray(labels).reshape(-1)
    b = len(labels)
    candidates = {}
    for a in range(b):
        positives = [p for p in range(b) if is_positive(labels, a, p)]
        negatives = [n for n in range(b) if is_negative(labels, a, n)]
        if positives and negatives:
            candidates[a] = (positives, negatives)
    return candidates


def mine_triplets(labels, embeddings, strategy="semi-hard", metric="euclidean"):
    labels, x = _as_arrays(labels, embeddings)
    return MINERS[strategy](labels, pairwise_distances(x, metric))


def mine_triplets_from_distances(labels, distances, strategy="semi-hard"):
    labels = np.asarray(labels).reshape(-1)
    return MINERS[strategy](labels, np.asarray(distances, dtype=np.float64))


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------
def contrastive_loss(labels, embeddings, margin=1.0, metric="euclidean"):
    """Hadsell, Chopra, LeCun 2006: same class 1/2 D^2, different class
    1/2 max(0, m - D)^2; mean over the B(B-1) ordered pairs i != j."""
    labels, x = _as_arrays(labels, embeddings)
    b = len(labels)
    total, count = 0.0, 0
    for i in range(b):
        for j in range(b):
            if i == j:
                continue
            d = distance(x[i], x[j], metric)
            if labels[i] == labels[j]:
                total += 0.5 * d**2
            else:
                total += 0.5 * max(0.0, margin - d) ** 2
            count += 1
    return total / count


def triplet_loss(labels, embeddings, margin=0.2, mining="semi-hard",
                 metric="euclidean", soft=False):
    """[D(a,p) - D(a,n) + m]+ (or softplus(D(a,p) - D(a,n)) when soft) over
    the mined triplets.  Reduction (docs/definitions.md):
      all:       mean over triplets with loss > 0 ("BA != 0"); 0 when none;
      hard:      mean over anchors with >= 1 positive and >= 1 negative;
      semi-hard: mean over positive pairs whose anchor has >= 1 negative.
    hard and semi-hard mine exactly one triplet per averaged item, so the
    reduction is the mean over the mined triplets."""
    labels, x = _as_arrays(labels, embeddings)
    dist = pairwise_distances(x, metric)
    triplets = MINERS[mining](labels, dist)
    losses = []
    for a, p, n in triplets:
        z = dist[a, p] - dist[a, n]
        losses.append(softplus(z) if soft else max(0.0, z + margin))
    if mining == "all":
        losses = [v for v in losses if v > 0.0]
    if not losses:
        return 0.0
    return sum(losses) / len(losses)


def triplet_loss_of_triplets(labels, embeddings, triplets, margin=0.2, metric="euclidean", soft=False):
    """Mean of [D(a,p) - D(a,n) + m]+ (softplus(D(a,p) - D(a,n)) when soft)
    over the given (a, p, n) triplets, easy ones (loss 0) included; 0 when
    there is none. The reduction of "random" (and of "hard")."""
    labels, x = _as_arrays(labels, embeddings)
    losses = []
    for a, p, n in triplets:
        z = distance(x[a], x[p], metric) - distance(x[a], x[n], metric)
        losses.append(softplus(z) if soft else max(0.0, z + margin))
    if not losses:
        return 0.0
    return sum(losses) / len(losses)


def npairs_pairs(labels):
    """(anchor, positive) indices: per class with >= 2 samples, its 1st and
    2nd occurrence in batch order; classes in order of first appearance."""
    labels = np.asarray(labels).reshape(-1)
    seen = {}
    order = []
    for i, y in enumerate(labels.tolist()):
        if y not in seen:
            seen[y] = [i]
            order.append(y)
        elif len(seen[y]) == 1:
            seen[y].append(i)
    return [tuple(seen[y]) for y in order if len(seen[y]) == 2]


def npairs_loss(labels, embeddings, l2_reg=0.002):
    """Sohn 2016: S = A P^T; softmax cross-entropy of row i with target i,
    mean over pairs, plus l2_reg * 0.25 * (mean ||a||^2 + mean ||p||^2).
    0 when fewer than 2 pairs."""
    labels, x = _as_arrays(labels, embeddings)
    pairs = npairs_pairs(labels)
    n = len(pairs)
    if n < 2:
        return 0.0
    ce = 0.0
    for i in range(n):
        a_i = x[pairs[i][0]]
        logits = [_dot(a_i, x[pairs[j][1]]) for j in range(n)]
        top = max(logits)
        log_sum_exp = top + math.log(sum(math.exp(s - top) for s in logits))
        ce += log_sum_exp - logits[i]
    ce /= n
    mean_sq_a = sum(_dot(x[a], x[a]) for a, _ in pairs) / n
    mean_sq_p = sum(_dot(x[p], x[p]) for _, p in pairs) / n
    return ce + l2_reg * 0.25 * (mean_sq_a + mean_sq_p)


def angular_loss(labels, embeddings, alpha_degrees=45.0):
    """Wang et al. 2017, N-pair-angular form: x L2-normalised,
    t = tan^2(alpha); per ordered positive pair (a, p) with >= 1 negative:
    log(1 + sum_n exp(4t (x_a + x_p).x_n - 2(1 + t) x_a.x_p)); mean over
    those pairs; 0 when none."""
    labels, x = _as_arrays(labels, embeddings)
    b = len(labels)
    unit = [x[i] / _norm(x[i]) for i in range(b)]
    t = math.tan(math.radians(alpha_degrees)) ** 2
    losses = []
    for a in range(b):
        for p in range(b):
            if not is_positive(labels, a, p):
                continue
            exps = []
            for n in range(b):
                if is_negative(labels, a, n):
                    f = (4.0 * t * _dot(unit[a] + unit[p], unit[n])
                         - 2.0 * (1.0 + t) * _dot(unit[a], unit[p]))
                    exps.append(f)
            if not exps:
                continue
            top = max(0.0, max(exps))  # log(1 + sum e^f), computed stably
            losses.append(top + math.log(math.exp(-top) + sum(math.exp(f - top) for f in exps)))
    if not losses:
        return 0.0
    return sum(losses) / len(losses)
