"""Built-in ops. Importing this package fills :data:`REGISTRY`."""

from archdsl.ops import layers, merges, params, shuffle, spatial, stochastic, tensors, transformer  # noqa: F401  (registration side effects)
from archdsl.ops.registry import (
    REGISTRY,
    ArgSpec,
    OpSpec,
    ShapeProblem,
    lookup,
    register,
    registered,
    unregister,
    user_ops,
)

__all__ = [
    "REGISTRY",
    "ArgSpec",
    "OpSpec",
    "ShapeProblem",
    "lookup",
    "register",
    "registered",
    "unregister",
    "user_ops",
]
