"""Graph rewrites applied to a compiled module: batch-norm folding, memory-efficient dense blocks."""

from archdsl.optimize.dense import concat_norm_relu_conv, memory_efficient_dense
from archdsl.optimize.fuse import fuse_batchnorm

__all__ = ["concat_norm_relu_conv", "fuse_batchnorm", "memory_efficient_dense"]
