"""Decoding on CPU with MKL-packed weights: the same fp32 linear layers, 1.5x faster at small batch.

A decode step multiplies a handful of rows (G = 8) by every weight matrix, and MKL's plain sgemm
then spends much of its time re-laying out the weight (measured on SmolLM2-135M, 2 cores: 43 ms
for one token's matrix products vs 28 ms with packed weights). Packing each weight once per
`generate` call (~0.15 s for 135M parameters) and swapping the linear layers' forward for MKL's
packed product while it runs makes decoding ~18% faster. The product is the same fp32 arithmetic
in another summation order, so sampled tokens match plain decoding up to float rounding.
Weights change after every optimizer step, so they are packed afresh on each call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch


def mkl_packing_available() -> bool:
    """Whether this PyTorch build has MKL's packed fp32 linear (x86 CPU builds do)."""
    return torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_reorder_linear_weight")


def packing_fallback(model: torch.nn.Module, available: bool | None = None) -> str | None:
    """Why packed decoding cannot be used for `model` (a notice), or None when it can."""
    available = mkl_packing_available() if available is None else available
    if not available:
        return "this PyTorch build has no MKL packed linear: decoding with plain weights"
    param = next(model.parameters())
    if param.device.type != "cpu" or param.dtype != torch.float32:
        return f"packed decoding needs fp32 weights on CPU (got {param.dtype} on {param.device.type}): decoding with plain weights"
    return None


@contextlib.contextmanager
def packed_linears(model: torch.nn.Module, rows: int) -> Iterator[None]:
    """While inside, every nn.Linear of `model` multiplies with a copy of its weight packed for `rows` rows.

    Inputs with another number of rows (the pre-fill) fall back to MKL's plain product. Inference
    only: the packed product has no gradient, so this runs under no_grad.
    """
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        for linear in linears:
            packed = torch.ops.mkl._mkl_reorder_linear_weight(linear.weight.detach(), rows)

            def forward(x: torch.Tensor, linear=linear, packed=packed) -> torch.Tensor:
                return torch.ops.mkl._mkl_linear(x, packed, linear.weight, linear.bias, rows)

            linear.forward = forward
        with torch.no_grad():
            yield
    finally:
        for linear in linears:
            linear.__dict__.pop("forward", None)


def packed_generate(generate: Callable, model: torch.nn.Module, input_ids: torch.Tensor, **kwargs):
    """`generate(input_ids=..., ...)` with `model`'s linear layers packed for the batch's row count."""
    with packed_linears(model, input_ids.size(0)):
        return generate(input_ids=input_ids, **kwargs)
