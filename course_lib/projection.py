"""Look at an embedding: project it to 2-D or 3-D, plot it, export it.

An embedding of 64 numbers per image cannot be looked at directly. Two ways
to squeeze it down to 2 or 3 coordinates:

* PCA keeps the directions of largest variance: a linear view, fast and
  exact, and distances along the kept directions mean what they say.
* UMAP (McInnes et al. 2018) keeps each point's nearest neighbours close:
  clusters show up clearly, but distances *between* clusters and cluster
  sizes in the picture mean little.

Typical use::

    coords = project(embeddings, method="umap")
    fig = embedding_figure(coords, labels, class_names, title="Fashion-MNIST test set")
    fig.show()                                          # in a notebook
    write_html(fig, "embedding.html", images=images)   # a page that works offline
    write_projector_files("projector/", embeddings, labels, class_names)

The last line writes the two files that the TensorBoard Embedding Projector
(https://projector.tensorflow.org, button "Load") reads.
"""

from __future__ import annotations

import base64
import html
import json
import struct
import zlib
from pathlib import Path

import numpy as np

from course_lib._checks import as_label_array, as_points
from course_lib.options import PROJECTIONS, check_choice

# Hover shows the point's text ("#12 Sneaker"); <extra></extra> hides the trace name box.
_HOVER_TEMPLATE = "%{text}<extra></extra>"


# ---------------------------------------------------------------- projection
def project(embeddings, method="pca", dim=2, seed=0):
    """Project embeddings [N, D] to float32 coordinates [N, dim].

    Args:
        embeddings: [N, D] array (NumPy array, list or tensor).
        method: ``"pca"`` or ``"umap"``.
        dim: 2 or 3.
        seed: random seed of UMAP (the same seed gives the same picture).
            PCA is exact and needs no seed.

    The first UMAP call of a Python session compiles its code with numba and
    takes about 10 seconds; later calls are faster.
    """
    check_choice("method", method, PROJECTIONS)
    if dim not in (2, 3) or isinstance(dim, bool):
        raise ValueError(f"`dim` must be 2 or 3, got {dim!r}.")
    x = as_points(embeddings)
    if len(x) < dim + 2:
        raise ValueError(
            f"Too few points to project: {len(x)}; need at least {dim + 2} for dim={dim}.")
    if method == "pca":
        if x.shape[1] < dim:
            raise ValueError(
                f"PCA cannot make {dim} coordinates from {x.shape[1]}-dimensional embeddings.")
        return pca(x, dim)
    return umap_projection(x, dim, seed)


def pca(x, dim=2):
    """Coordinates of x [N, D] along its ``dim`` principal directions.

    Centre the points and find the principal directions V, the top
    eigenvectors of the D x D scatter matrix X^T X (the right singular
    vectors of X); the coordinates are X V. The D x D eigenproblem is cheap
    when D is small (64-d embeddings, 784 pixels) even for many points. Each
    direction's sign is fixed so that its largest-magnitude weight is
    positive: the same input always gives the same picture, not a mirrored one.
    """
    centred = (x - x.mean(axis=0)).astype(np.float64)
    if centred.shape[1] <= centred.shape[0]:
        _, vectors = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
        vt = vectors[:, ::-1][:, :dim].T
    else:
        vt = np.linalg.svd(centred, full_matrices=False)[2][:dim]
    largest = np.argmax(np.abs(vt), axis=1)
    signs = np.sign(vt[np.arange(dim), largest])
    return (centred @ (vt * signs[:, None]).T).astype(np.float32)


def umap_projection(x, dim=2, seed=0):
    """UMAP coordinates of x [N, D]; deterministic for a given seed (single-threaded)."""
    import umap  # imported here: it is slow to import and only this function needs it

    reducer = umap.UMAP(
        n_components=dim,
        n_neighbors=min(15, len(x) - 1),
        random_state=seed,
        n_jobs=1,  # one thread: with a seed, UMAP is only reproducible on one thread
    )
    return reducer.fit_transform(x).astype(np.float32)


# ------------------------------------------------------------- plotly figure
def embedding_figure(coords, labels, class_names=None, images=None, title=None):
    """An interactive scatter plot of projected embeddings: a plotly ``go.Figure``.

    Args:
        coords: [N, 2] or [N, 3] coordinates (from :func:`project`); 3 columns
            give a 3-D plot you can turn with the mouse.
        labels: [N] integer class labels.
        class_names: optional, ``class_names[label]`` is the name shown in the
            legend and on hover (default: the label itself).
        images: optional uint8 [N, 28, 28] pictures of the points. A plotly
            hover label cannot show a picture, so the figure only checks them
            against ``coords``: pass the same images to :func:`write_html`,
            whose page shows the hovered point's picture beside the plot.
        title: optional title.

    One trace per class, so clicking a class in the legend hides or shows it.
    Every point carries its index in ``customdata`` (hover shows it too), to
    find it again in the arrays: ``images[index]``, ``labels[index]``.
    """
    import plotly.graph_objects as go

    coords = np.asarray(coords, dtype=np.float32)
    if coords.ndim != 2 or coords.shape[1] not in (2, 3):
        raise ValueError(f"`coords` must be [N, 2] or [N, 3], got shape {coords.shape}.")
    labels = as_label_array(labels, len(coords), embeddings_name="coords")
    if images is not None:
        _check_images(images, len(coords))

    fig = go.Figure()
    for label in np.unique(labels):
        index = np.flatnonzero(labels == label)
        name = _class_name(label, class_names)
        text = [f"#{i} {name}" for i in index]
        if coords.shape[1] == 2:
            trace = go.Scatter(x=coords[index, 0], y=coords[index, 1], mode="markers",
                               marker={"size": 5, "opacity": 0.8})
        else:
            trace = go.Scatter3d(x=coords[index, 0], y=coords[index, 1], z=coords[index, 2],
                                 mode="markers", marker={"size": 2.5, "opacity": 0.8})
        trace.update(name=name, text=text, customdata=index, hovertemplate=_HOVER_TEMPLATE)
        fig.add_trace(trace)

    fig.update_layout(title=title, legend_title_text="class", template="plotly_white",
                      width=800, height=650)
    if coords.shape[1] == 2:
        fig.update_yaxes(scaleanchor="x", scaleratio=1)  # equal scales: no distortion
    return fig


def _class_name(label, class_names):
    if class_names is None:
        return str(label)
    return str(class_names[int(label)])


def _check_images(images, n=None):
    """uint8 images [N, height, width], with N = ``n`` points when given."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or (n is not None and len(images) != n):
        count = "" if n is None else f" with N = {n}"
        raise ValueError(f"`images` must be uint8 [N, height, width]{count}, got {images.dtype} {images.shape}.")
    return images


# ------------------------------------------------------ standalone HTML page
def image_data_uri(image):
    """A grayscale uint8 image [height, width] as a ``data:image/png;base64,...`` URI.

    Writes the PNG file format by hand (it is short): an 8-byte signature,
    then chunks ``length, type, data, CRC``: IHDR (size and pixel format),
    IDAT (the zlib-compressed rows, each starting with filter byte 0) and IEND.
    A browser shows the URI like a file: ``<img src="data:image/png;base64,...">``.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"`image` must be uint8 [height, width], got {image.dtype} {image.shape}.")
    height, width = image.shape
    rows = b"".join(b"\x00" + row.tobytes() for row in image)  # filter type 0: none
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    png = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
           + _png_chunk(b"IDAT", zlib.compress(rows, 9)) + _png_chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _png_chunk(kind, data):
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


_PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
  body {{ font-family: sans-serif; margin: 1em; }}
  .row {{ display: flex; align-items: flex-start; gap: 1em; }}
  #picture-panel {{ width: 150px; text-align: center; }}
  #picture {{ width: 140px; height: 140px; image-rendering: pixelated; border: 1px solid #ccc; }}
</style>
</head>
<body>
<div class="row">
{plot}
{panel}
</div>
</body>
</html>
"""

_PANEL = """<div id="picture-panel">
  <img id="picture" alt="">
  <p id="picture-caption">Hover over a point to see its image.</p>
</div>"""

# Runs once the plot exists (plotly's post_script): on hover, show the image
# of the point under the mouse. The point's index is its customdata.
_HOVER_SCRIPT = """
const pictures = PICTURES;
document.getElementById("{plot_id}").on("plotly_hover", function (event) {
  const point = event.points[0];
  document.getElementById("picture").src = pictures[point.customdata];
  document.getElementById("picture-caption").textContent = point.text;
});
"""


def write_html(fig, path, images=None):
    """Write ``fig`` as a standalone HTML page that works offline; return its path.

    plotly.js is included in the file (about 5 MB), so the page needs no
    network. With ``images`` (uint8 [N, H, W], indexed by the points' index
    in ``customdata``, as :func:`embedding_figure` sets it), a panel beside
    the plot shows the image of the point under the mouse.
    """
    path = Path(path)
    panel, post_script = "", None
    if images is not None:
        pictures = json.dumps([image_data_uri(image) for image in _check_images(images)])
        panel = _PANEL
        post_script = _HOVER_SCRIPT.replace("PICTURES", pictures)
    plot = fig.to_html(full_html=False, include_plotlyjs=True, div_id="embedding",
                       post_script=post_script)
    title = fig.layout.title.text or "Embedding"
    page = _PAGE.format(title=html.escape(title), plot=plot, panel=panel)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


# ------------------------------------------- TensorBoard Embedding Projector
def write_projector_files(directory, embeddings, labels, class_names=None):
    """Write ``embeddings.tsv`` and ``metadata.tsv`` for the Embedding Projector.

    ``embeddings.tsv``: one row per point, its D numbers separated by tabs, no
    header. ``metadata.tsv``: a header line ``label<TAB>class``, then one line
    per point, in the same order. Open https://projector.tensorflow.org,
    click "Load", and choose the two files; colour the points "by class".

    Returns ``(embeddings_path, metadata_path)``.
    """
    x = as_points(embeddings)
    labels = as_label_array(labels, len(x))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    embeddings_path = directory / "embeddings.tsv"
    metadata_path = directory / "metadata.tsv"
    np.savetxt(embeddings_path, x, fmt="%.7g", delimiter="\t")
    lines = ["label\tclass"]
    for label in labels:
        name = _class_name(label, class_names).replace("\t", " ")
        lines.append(f"{label}\t{name}")
    metadata_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return embeddings_path, metadata_path
