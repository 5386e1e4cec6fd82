"""Randomness from the operating system's CSPRNG, for runs with ``privacy.secure_rng``.

The seeded streams (benchmark/streams.py) make every run reproducible, and so make its Poisson
masks and noise recomputable by whoever holds the seeds. A secure run draws both from the
operating system instead (``os.urandom``): it gives up reproducibility for a guarantee that does
not rest on keeping the seeds secret.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch


def secure_uniform(n: int) -> torch.Tensor:
    """``n`` uniforms in [0, 1) from the operating system's CSPRNG (53 random bits each)."""
    bits = np.frombuffer(os.urandom(8 * n), dtype=np.uint64) >> np.uint64(11)
    return torch.from_numpy(bits.astype(np.float64) * 2.0**-53)


def secure_gaussian(shape: torch.Size, std: float, dtype: torch.dtype, device) -> torch.Tensor:
    """Gaussian noise N(0, std²) from the operating system's CSPRNG.

    Box–Muller on CSPRNG uniforms, and, as Opacus' secure mode does against floating-point
    attacks on the noise's low bits (Mironov 2012; arXiv:2112.05307, the attack on Opacus), the sum of four
    draws divided by two, which has the same variance.
    """
    n = int(np.prod(shape)) if len(shape) else 1
    total = torch.zeros(n, dtype=torch.float64)
    for _ in range(4):
        u1 = 1.0 - secure_uniform(n)  # (0, 1]: log stays finite
        u2 = secure_uniform(n)
        total += torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return (total * (std / 2.0)).reshape(shape).to(dtype=dtype, device=device)
