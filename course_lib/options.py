"""The names of the options and their choices, in one place that imports no TensorFlow.

``python -m course_lib --help`` reads them without starting TensorFlow; the
library checks its arguments against the same tuples. The *defaults* are not
here: each belongs to the function that uses it (``triplet_loss(margin=0.2)``)
and :func:`defaults_of` reads them from its signature, or from its source
when importing it would start TensorFlow.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
from pathlib import Path

METRICS = ("euclidean", "squared_euclidean", "cosine")
STRATEGIES = ("all", "hard", "semi-hard", "random")  # triplet mining ("random": no mining, the baseline)
LOSSES = ("contrastive", "triplet", "npairs", "angular", "supcon", "nt-xent", "multi-similarity",
          "cross_entropy")  # cross_entropy: the softmax classifier baseline
DISTRIBUTE = ("default", "mirrored", "multi-worker")  # --strategy: how training spreads over devices
DATASETS = ("mnist", "fashion_mnist")
SPLITS = ("train", "test")
SOURCES = ("auto", "bundled", "full")
PROJECTIONS = ("pca", "umap")


def check_choice(name, value, choices):
    """``value`` when it is one of ``choices``, else a ValueError naming ``name``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {name}={value!r}.")
    return value


def defaults_of(function):
    """The keyword arguments of ``function`` that have a default, with that default.

    ``function``: a function, or its dotted name (``"course_lib.training.train"``),
    whose literal defaults are then read from the module's source without
    importing the module: the command line's ``--help`` shows the library's
    defaults without starting TensorFlow.
    """
    if isinstance(function, str):
        return dict(_source_defaults(function))
    parameters = inspect.signature(function).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


@functools.cache
def _source_defaults(dotted_name):
    """The literal defaults of the function ``dotted_name``, parsed from its module's source."""
    module, _, name = dotted_name.rpartition(".")
    spec = importlib.util.find_spec(module) if module else None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8")) if spec and spec.origin else ast.Module([])
    found = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name]
    if not found:
        raise ValueError(f"function must be a function or a dotted name like 'course_lib.training.train', "
                         f"got {dotted_name!r}.")
    args = found[0].args
    positional = args.posonlyargs + args.args
    pairs = [*zip(positional[len(positional) - len(args.defaults):], args.defaults),
             *zip(args.kwonlyargs, args.kw_defaults)]
    literal = (ast.Constant, ast.Tuple, ast.UnaryOp)  # 0.2, None, "cosine", (1, 5, 10), -1
    return tuple((arg.arg, ast.literal_eval(default)) for arg, default in pairs if isinstance(default, literal))
