"""archdsl: a declarative architecture language and graph compiler for PyTorch.

>>> import archdsl
>>> g = archdsl.graph("resnet18", num_classes=10)
>>> g.nodes["fc"]["shape"]
(10,)
"""

from archdsl.api import graph, load, load_checkpoint, save_checkpoint
from archdsl.errors import (
    ArchCheckpointError,
    ArchError,
    ArchGraphError,
    ArchImportError,
    ArchLimitError,
    ArchNameError,
    ArchShapeError,
    ArchSyntaxError,
    ArchTypeError,
    Diagnostic,
    Span,
)
from archdsl.limits import Limits
from archdsl.parse import parse
from archdsl.resources import zoo_dir, zoo_names

__version__ = "0.1.0"

__all__ = [
    "ArchCheckpointError",
    "ArchError",
    "ArchGraphError",
    "ArchImportError",
    "ArchLimitError",
    "ArchNameError",
    "ArchShapeError",
    "ArchSyntaxError",
    "ArchTypeError",
    "Diagnostic",
    "Limits",
    "Span",
    "graph",
    "load",
    "load_checkpoint",
    "parse",
    "save_checkpoint",
    "zoo_dir",
    "zoo_names",
]
