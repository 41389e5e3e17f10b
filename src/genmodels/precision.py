"""Numeric precision of the network: ``fp32``, ``bf16`` or ``fp16`` autocast, and ``auto`` (measured default).

``--precision`` on ``train``, ``sample`` and ``evaluate`` names one of :data:`PRECISIONS`. Mixed precision is
autocast (Micikevicius et al. 2018, "Mixed Precision Training"): the weights, the optimizer state, the EMA and every
op outside autocast's low-precision list stay float32; matrix products and convolutions run in bf16/fp16 and their
outputs are cast back to float32 by accelerate before the loss (training) or by the family's math (the schedules,
``alphas_cumprod``/``logsnr``, the discretized-Gaussian likelihood, the KL terms and every bits/dim sum are float32
or float64 tensors, which promote a low-precision network output when they meet it). The probability-flow ODE's
likelihood (``evaluate --ode``) integrates in float64 whatever this says.

Training goes through accelerate's ``Accelerator(mixed_precision=…)`` (:mod:`genmodels.train`); sampling and
evaluation through :func:`autocast`. fp16 needs a GPU (accelerate runs CPU autocast in bf16 only, and fp16 training
needs its gradient scaler); bf16 runs on a CPU at speed only where it has bf16 instructions (AVX512-BF16 or AMX).

``auto``, the default of ``train``, ``sample``, ``pictures`` and ``demo``, is :func:`auto_precision`: bf16 where the
device computes it natively, fp32 elsewhere (measured on our 2-core AVX512-BF16 machine, BENCHMARKS.md issue 18:
Fashion-MNIST DDPM and VDM training 1.48×/1.46× the images/s of fp32, the test bound after the same 1000 steps
+0.002/+0.011 bits/dim). ``evaluate`` defaults to fp32 (its numbers are the product; evaluating in bf16 shifted the
same bounds by +0.015/+0.030), with bf16 available.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from typing import Literal

import torch

__all__ = ["PRECISIONS", "Precision", "auto_precision", "resolve_precision", "cpu_has_bf16", "autocast",
           "accelerate_mixed_precision"]

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""What ``--precision`` accepts."""

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (the ``avx512_bf16`` or ``amx_bf16`` flag in /proc/cpuinfo;
    False where the file cannot be read, e.g. not Linux: bf16 there is emulated, slower than fp32)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def auto_precision(device: torch.device | str) -> Precision:
    """``auto``: bf16 where ``device`` computes it natively (a CUDA GPU with bf16, a CPU with AVX512-BF16/AMX),
    else fp32."""
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_bf16() else "fp32"
    return "fp32"


def resolve_precision(precision: str, device: torch.device | str) -> Precision:
    """The precision ``--precision`` names on ``device``: ``auto`` through :func:`auto_precision`, the others
    checked.

    Raises:
        ValueError: an unknown name, or fp16 on a CPU (one line naming the fix).
    """
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return auto_precision(device)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("--precision fp16 needs a GPU (on a CPU, accelerate runs mixed precision in bf16 only); "
                         "use --precision bf16 or fp32")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        logger.warning("this CPU has no native bf16 (AVX512-BF16/AMX): --precision bf16 is emulated here and "
                       "slower than fp32")
    return precision  # type: ignore[return-value]


def accelerate_mixed_precision(precision: Precision) -> Literal["no", "bf16", "fp16"]:
    """accelerate's ``mixed_precision`` name of a resolved precision (``fp32`` -> ``"no"``)."""
    return "no" if precision == "fp32" else precision


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """Run the block's network calls in ``precision`` (``fp32``: unchanged; ``bf16``/``fp16``: ``torch.autocast``
    on ``device``'s type). Tensors created inside keep their dtypes; only autocast's op list changes precision."""
    if precision in ("fp32", "no"):
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=_DTYPES[precision]):
        yield
