"""course_lib: ranking losses for deep metric learning on TensorFlow 2.21 / Keras 3.

Modules, one concept each:

=================  ==========================================================================
``distances``      pairwise distance matrices (euclidean, squared, cosine)
``mining``         positive/negative masks and triplet miners (all/hard/semi-hard)
``losses``         contrastive, triplet, N-pairs, angular, SupCon, NT-Xent, multi-similarity
``data``           offline MNIST / Fashion-MNIST and the P x K batch sampler
``models``         the CNN embedding network and its classifier twin
``training``       the training loop with diagnostics (active triplets, collapse)
``retrieval``      precision@1, recall@k, R-precision, MAP@R; nearest neighbours
``holdout``        held-out classes: the seen/unseen split and report beside pixels
``projection``     PCA/UMAP projections, HTML and Embedding Projector export
``viz``            plotly drawing primitives
``widgets``        binding ipywidgets to pure compute/draw functions
``demos``          the compute/draw pairs behind each lesson's interactive figures
``exercises``      self-checks for the lessons' exercises
``config``         fast / full course profiles
``options``        option names and choices (no TensorFlow: the CLI's --help)
=================  ==========================================================================
"""

import importlib.abc
import importlib.util
import os
import sys


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``tensorflow`` (the first time anything asks for it) with stderr silenced.

    TensorFlow's C++ start-up log ("Could not find cuda drivers on your
    machine", cuInit, CPU features) would fill the first cell of every lesson.
    TF_CPP_MIN_LOG_LEVEL=3 hides most of it, but not the lines TensorFlow 2.21
    prints while it loads (tensorflow/tensorflow#100442): those only file
    descriptor 2 pointing at /dev/null hides. Python errors still surface:
    they are raised after stderr is back. Set TF_CPP_MIN_LOG_LEVEL yourself,
    before importing course_lib, to see the whole log.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once; the usual finders locate the package
        spec = importlib.util.find_spec(name)
        if spec is not None:
            self.loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 2)
            self.loader.exec_module(module)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            module.__loader__ = module.__spec__.loader = self.loader  # as if imported plainly


if "TF_CPP_MIN_LOG_LEVEL" not in os.environ and "tensorflow" not in sys.modules:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.meta_path.insert(0, _QuietTensorFlowImport())

from course_lib.config import profile, settings  # noqa: E402

__version__ = "0.1.0"
__all__ = ["profile", "settings", "__version__"]
