"""Which examples each training step uses: Poisson batches under DP, shuffled batches without.

DP-SGD's accountant assumes Poisson sampling: at every step each example joins the batch
independently with probability q, so the batch size varies and may be zero. A non-private run
takes the usual shuffled epochs. Both take exactly the steps the recipe counts.
"""

from __future__ import annotations

import torch

from .secure_rng import secure_uniform


def poisson_draw(n: int, sample_rate: float, generator: torch.Generator | None) -> torch.Tensor:
    """Indices of the n rows that join one Poisson-sampled step, each with probability q (``None``:
    uniforms from the operating system, ``privacy.secure_rng``)."""
    uniform = secure_uniform(n) if generator is None else torch.rand(n, generator=generator)
    return torch.nonzero(uniform < sample_rate).reshape(-1)


class PoissonBatches:
    """Poisson sampling, as DP-SGD's accountant assumes: at each step every one of the ``n``
    examples joins the batch independently with probability q. One pass = ``steps`` steps
    exactly (Opacus' own sampler runs ``int(1/q)`` steps, one fewer than k when 1/k rounds down).

    ``extra`` rows (gradient canaries) are drawn by the same rule at the same q from a generator of
    their own and appended as indices n, n + 1, …: the real examples' draws are those of a run
    without them. ``None`` generators draw from the operating system (``privacy.secure_rng``).
    """

    def __init__(self, n: int, sample_rate: float, steps: int, generator: torch.Generator | None,
                 extra: int = 0, extra_generator: torch.Generator | None = None):
        self.n, self.sample_rate, self.steps, self.generator = n, sample_rate, steps, generator
        self.extra, self.extra_generator = extra, extra_generator

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            idx = poisson_draw(self.n, self.sample_rate, self.generator)
            if self.extra:
                idx = torch.cat([idx, self.n + poisson_draw(self.extra, self.sample_rate, self.extra_generator)])
            yield idx


class ShuffledBatches:
    """A non-private epoch: a random permutation cut into ``steps`` batches of near-equal size."""

    def __init__(self, n: int, steps: int, generator: torch.Generator):
        self.n, self.steps, self.generator = n, steps, generator

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        yield from torch.tensor_split(torch.randperm(self.n, generator=self.generator), self.steps)
