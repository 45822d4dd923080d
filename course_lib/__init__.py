"""course_lib: ranking losses for deep metric learning on TensorFlow 2.21 / Keras 3.

Modules, one concept each:

=================  ===========================================================
``distances``      pairwise distance matrices (euclidean, squared, cosine)
``mining``         positive/negative masks and triplet miners (all/hard/semi-hard)
``losses``         contrastive, triplet, N-pairs, angular (functions + Keras classes)
``data``           offline MNIST / Fashion-MNIST and the P x K batch sampler
``models``         the CNN embedding network and its classifier twin
``training``       the training loop with diagnostics (active triplets, collapse)
``retrieval``      precision@1, recall@k, R-precision, MAP@R; nearest neighbours
``projection``     PCA/UMAP projections, HTML and Embedding Projector export
``viz``            plotly drawing primitives
``widgets``        binding ipywidgets to pure compute/draw functions
``demos``          the compute/draw pairs behind each lesson's interactive figures
``exercises``      self-checks for the lessons' exercises
``config``         fast / full course profiles
=================  ===========================================================
"""

from course_lib.config import profile, settings

__version__ = "0.1.0"
__all__ = ["profile", "settings", "__version__"]
