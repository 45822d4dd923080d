"""Tests of course_lib.projection: PCA / UMAP, the plotly figure, HTML and TSV export."""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib

import numpy as np
import plotly.graph_objects as go
import pytest

from course_lib import projection
from course_lib.retrieval import evaluate


def clusters(n_per_class=20, n_classes=3, dim=16, seed=0):
    """Well separated Gaussian clusters: (points float32 [N, dim], labels [N])."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 5.0
    labels = np.repeat(np.arange(n_classes), n_per_class)
    points = centres[labels] + rng.normal(size=(len(labels), dim))
    return points.astype(np.float32), labels


def decode_png(uri):
    """Pixels of an 8-bit grayscale PNG data URI, as written by image_data_uri."""
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    png = base64.b64decode(uri[len(prefix):])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = {}, 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at:at + 4])
        kind, body = png[at + 4:at + 8], png[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", png[at + 8 + length:at + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = body
        at += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 0)
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, width + 1)
    assert (rows[:, 0] == 0).all()  # filter type 0 on every row
    return rows[:, 1:]


# ----------------------------------------------------------------- project
@pytest.mark.parametrize("dim", [2, 3])
def test_pca_shape_dtype_and_determinism(dim):
    points, _ = clusters()
    coords = projection.project(points, "pca", dim=dim)
    assert coords.shape == (len(points), dim) and coords.dtype == np.float32
    np.testing.assert_array_equal(coords, projection.project(points, "pca", dim=dim))
    np.testing.assert_allclose(coords.mean(axis=0), 0.0, atol=1e-4)  # centred
    variances = coords.var(axis=0)
    assert np.all(np.diff(variances) <= 0)  # first direction has the largest variance


def test_pca_matches_sklearn_up_to_sign():
    from sklearn.decomposition import PCA

    points, _ = clusters(dim=8)
    ours = projection.project(points, "pca", dim=3)
    theirs = PCA(n_components=3).fit_transform(points)
    np.testing.assert_allclose(np.abs(ours), np.abs(theirs), rtol=1e-3, atol=1e-3)


def test_pca_keeps_clusters_apart():
    points, labels = clusters()
    coords = projection.project(points, "pca")
    assert evaluate(coords, labels)["precision_at_1"] == 1.0


@pytest.mark.slow  # the first UMAP call compiles numba code: 10 s or more
def test_umap_is_deterministic_and_keeps_clusters():
    points, labels = clusters(n_per_class=50, n_classes=4)  # 200 points
    coords = projection.project(points, "umap", seed=3)
    assert coords.shape == (200, 2) and coords.dtype == np.float32
    np.testing.assert_array_equal(coords, projection.project(points, "umap", seed=3))
    assert evaluate(coords, labels)["precision_at_1"] == 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "tsne"}, "method"),
        ({"dim": 1}, "dim"),
        ({"dim": 4}, "dim"),
        ({"embeddings": np.zeros((3, 8))}, "Too few points"),
        ({"embeddings": np.zeros(10)}, r"\[N, D\]"),
        ({"embeddings": np.full((10, 4), np.nan)}, "NaN"),
        ({"embeddings": np.zeros((10, 2)), "dim": 3}, "PCA cannot"),
    ],
)
def test_project_rejects_bad_arguments(kwargs, message):
    arguments = {"embeddings": clusters()[0], **kwargs}
    with pytest.raises(ValueError, match=message):
        projection.project(**arguments)


# ------------------------------------------------------------------ figure
def test_figure_has_one_trace_per_class():
    points, labels = clusters(n_classes=3)
    names = ["zero", "one", "two"]
    fig = projection.embedding_figure(projection.project(points), labels, names, title="t")
    assert isinstance(fig, go.Figure)
    assert [trace.name for trace in fig.data] == names
    assert all(isinstance(trace, go.Scatter) for trace in fig.data)
    assert sum(len(trace.x) for trace in fig.data) == len(points)
    for trace in fig.data:
        index = np.asarray(trace.customdata)  # each point's index in the arrays
        assert (labels[index] == names.index(trace.name)).all()
        assert trace.text[0] == f"#{index[0]} {trace.name}"
    assert fig.layout.title.text == "t"


def test_figure_default_names_are_the_labels():
    points, labels = clusters(n_classes=2)
    fig = projection.embedding_figure(projection.project(points), labels + 5)
    assert [trace.name for trace in fig.data] == ["5", "6"]


def test_three_columns_give_a_3d_scatter():
    points, labels = clusters()
    fig = projection.embedding_figure(projection.project(points, dim=3), labels)
    assert len(fig.data) == 3
    assert all(isinstance(trace, go.Scatter3d) for trace in fig.data)


@pytest.mark.parametrize(
    "coords, labels, images",
    [
        (np.zeros((5, 4)), np.zeros(5, int), None),  # 4 columns
        (np.zeros((5, 2)), np.zeros(4, int), None),  # labels too short
        (np.zeros((5, 2)), np.zeros(5, int), np.zeros((5, 28, 28))),  # float images
        (np.zeros((5, 2)), np.zeros(5, int), np.zeros((4, 28, 28), np.uint8)),
    ],
)
def test_figure_rejects_bad_inputs(coords, labels, images):
    with pytest.raises(ValueError):
        projection.embedding_figure(coords, labels, images=images)


# -------------------------------------------------------------------- HTML
def test_image_data_uri_is_a_png_of_the_pixels():
    image = np.random.default_rng(0).integers(0, 256, size=(28, 20), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(projection.image_data_uri(image)), image)
    with pytest.raises(ValueError):
        projection.image_data_uri(image.astype(np.float32))


def test_html_is_standalone_and_shows_images_on_hover(tmp_path):
    points, labels = clusters()
    images = np.random.default_rng(1).integers(0, 256, size=(len(points), 28, 28), dtype=np.uint8)
    fig = projection.embedding_figure(projection.project(points), labels, images=images)
    path = projection.write_html(fig, tmp_path / "plot.html", images=images)
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert len(page) > 1_000_000  # plotly.js is inside the file...
    assert "Plotly.newPlot" in page
    assert not re.search(r"<script[^>]*\bsrc=", page)  # ...and nothing is fetched
    assert 'id="picture"' in page and '.on("plotly_hover"' in page
    uris = json.loads(re.search(r"const pictures = (\[.*?\]);", page).group(1))
    assert len(uris) == len(images)
    np.testing.assert_array_equal(decode_png(uris[7]), images[7])


def test_html_without_images_has_no_panel(tmp_path):
    points, labels = clusters()
    fig = projection.embedding_figure(projection.project(points), labels)
    page = projection.write_html(fig, tmp_path / "sub" / "plot.html").read_text(encoding="utf-8")
    assert 'id="picture"' not in page and '.on("plotly_hover"' not in page
    assert not re.search(r"<script[^>]*\bsrc=", page)


# -------------------------------------------------------- Embedding Projector
def test_projector_files_parse_back(tmp_path):
    points, labels = clusters(n_classes=3)
    names = ["T-shirt/top", "Trouser", "Pull over"]
    emb_path, meta_path = projection.write_projector_files(tmp_path / "proj", points, labels, names)
    assert (emb_path.name, meta_path.name) == ("embeddings.tsv", "metadata.tsv")
    values = np.loadtxt(emb_path, delimiter="\t", dtype=np.float32)
    assert values.shape == points.shape
    np.testing.assert_allclose(values, points, rtol=1e-6, atol=1e-6)
    lines = meta_path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "label\tclass"
    assert len(lines) == len(points) + 1
    rows = [line.split("\t") for line in lines[1:]]
    assert [int(label) for label, _ in rows] == labels.tolist()
    assert [name for _, name in rows] == [names[label] for label in labels]


def test_projector_files_check_lengths(tmp_path):
    points, labels = clusters()
    with pytest.raises(ValueError, match="labels"):
        projection.write_projector_files(tmp_path, points, labels[:-1])
    with pytest.raises(ValueError, match="non-empty"):
        projection.write_projector_files(tmp_path, points[:0], labels[:0])


def test_figure_and_projector_accept_keras_labels(tmp_path):
    points, labels = clusters(n_classes=2)
    fig = projection.embedding_figure(projection.project(points), labels[:, None])
    assert [trace.name for trace in fig.data] == ["0", "1"]
    _, meta_path = projection.write_projector_files(tmp_path, points, labels[:, None])
    assert meta_path.read_text(encoding="utf-8").splitlines()[1:] == [f"{y}\t{y}" for y in labels]


def test_html_rejects_float_images(tmp_path):
    points, labels = clusters()
    fig = projection.embedding_figure(projection.project(points), labels)
    with pytest.raises(ValueError, match="uint8"):
        projection.write_html(fig, tmp_path / "plot.html", images=np.zeros((len(points), 28, 28)))
