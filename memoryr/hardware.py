"""What the CPU can do fast: bf16 matrix units (AMX, AVX512-BF16), and the fallback when it cannot.

bf16 on a CPU only pays off with hardware bf16 arithmetic; elsewhere PyTorch emulates it and a
step gets slower, so a recipe asking for bf16 on such a CPU falls back to fp32 with a notice.
"""

from __future__ import annotations

from pathlib import Path

import torch


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (or of the text given, for tests)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_bf16_kind(cpuinfo: str | None = None) -> str | None:
    """'amx' or 'avx512_bf16' when the CPU computes in bf16 natively, else None."""
    flags = cpu_flags(cpuinfo)
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    return None


def cpu_precision_fallback(training_args, cpuinfo: str | None = None) -> str | None:
    """Turn bf16 off for a CPU run on a CPU without bf16 units; returns the notice, or None if unchanged."""
    on_cpu = training_args.use_cpu or not torch.cuda.is_available()
    if not (on_cpu and training_args.bf16) or cpu_bf16_kind(cpuinfo) is not None:
        return None
    training_args.bf16 = False
    return "this CPU has no bf16 units (AMX or AVX512-BF16): training in fp32 instead of bf16"
