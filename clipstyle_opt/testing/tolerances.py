"""Float tolerances for tests that compare two computations of the same quantity.

A tolerance must hold on any x86-64 CPU, not just the one it was tried on:
oneDNN and the BLAS pick kernels per CPU (AMX on recent Intel Xeons,
AVX512 on AMD EPYC), so the order of every long sum, and with it the
rounding, changes from machine to machine. The bounds here are therefore
stated in units of the precision's machine epsilon, not copied from a run.
"""
from __future__ import annotations

import torch

REORDERED_ULPS = 128
"""The same fp32 computation with its sums in another order (batched vs looped, another layout,
another kernel): errors of a few eps per operation that mostly cancel over reductions of
thousands of terms. 128 eps = 1.5e-5 in fp32."""

GRADIENT_ULPS = 1024
"""Gradients chain many more such reductions than the forward values (1.2e-4 in fp32)."""


def eps(dtype: torch.dtype = torch.float32) -> float:
    """Machine epsilon of ``dtype`` (1.19e-7 for fp32, 7.8e-3 for bf16)."""
    return float(torch.finfo(dtype).eps)


def reordered(dtype: torch.dtype = torch.float32) -> float:
    """Relative bound for the same computation with its sums in another order."""
    return REORDERED_ULPS * eps(dtype)


def reordered_gradient(dtype: torch.dtype = torch.float32) -> float:
    """Relative bound for a gradient (compared as one vector) computed along another path."""
    return GRADIENT_ULPS * eps(dtype)


__all__ = ["eps", "reordered", "reordered_gradient", "REORDERED_ULPS", "GRADIENT_ULPS"]
