"""Gradient (Dirac) canaries inside the target's own DP-SGD run: the white-box audit's instrument.

The threat model of the DP guarantee itself is an adversary who inserts examples and sees the
training's model states (Nasr et al. 2023; Steinke, Nasr, Jagielski 2023, white-box). Here m
canaries join the training run, each with probability ½. A canary is an example whose per-sample
gradient is a fixed unit vector: one coordinate of an extra parameter block ``weight`` (m
coordinates) that real examples never touch, scaled far beyond the clip norm so that clipping
brings it to exactly C·e_j. Canaries are

* sampled by the run's own Poisson sampler, at its rate q (they are extra rows of the sampled
  set, so a sampling fault shows in the audit);
* clipped, summed and noised by the same Opacus code path as the real examples: their rows are
  appended to every parameter's per-sample gradients (zeros for the classifier, C·e_j-sized for
  ``weight``) before the optimiser's step, and ``weight`` is the optimiser's last parameter, so it
  draws its noise after the classifier's;
* invisible to the classifier: for the same real batch and noise draw, the classifier's clipped
  sum, noise and normalisation (Opacus divides by the expected batch size of the real examples)
  are those of a run without canaries, up to float rounding: the appended rows lengthen the
  per-sample reductions, whose summation order depends on the CPU's vector unit
  (tests/benchmark/test_canaries.py checks one step to 1e-7 and a whole run to 1e-6).

Each step the auditor reads ``weight``'s noisy update, o_t = grad · B/C = b_t + N(0, σ²) per
canary (b_t = 1 when the canary was sampled), and keeps two scores: Σ_t ℓ(o_t) with the per-step
log-likelihood ratio ℓ(o) = log(1 − q + q·exp((2o − 1)/(2σ²))) ("all iterates", what a federated
server sees) and Σ_t o_t (what the final value of a block trained with a constant learning rate
shows: "final model", i.e. the sum of the updates, the final model of plain constant-rate SGD, not of
the recipe's momentum and schedule). The scores are computed with the recipe's *claimed* σ and q, so a run that
uses less noise or more sampling than it claims is caught. A non-private run (σ = 0, no clipping)
observes b_t itself.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from medprivbench.attacks.bounds import per_step_log_ratio

# How far beyond C a canary's raw gradient lies: clipping then scales it to C·(1 − 1e-6/(G·C)).
GRADIENT_SCALE = 1e6


class GradientCanaries:
    """The canaries of one training run and what the auditor observed of them: an
    :class:`~.training.Instrument`, passed to ``train(..., instruments=[canaries])``."""

    def __init__(self, included: np.ndarray, *, sample_rate: float, noise_multiplier: float, max_grad_norm: float):
        self.included = np.asarray(included, dtype=bool)  # ground truth: only the referee reads it
        self.m = self.included.size
        self.ids = torch.from_numpy(np.flatnonzero(self.included))  # canary index of each extra row
        self.sample_rate, self.sigma, self.clip = float(sample_rate), float(noise_multiplier), float(max_grad_norm)
        self.weight = nn.Parameter(torch.zeros(self.m))
        self.sum_observed = np.zeros(self.m)
        self.sum_log_ratio = np.zeros(self.m)
        self.steps = 0
        self.rows_per_step: list[int] = []

    @property
    def n_rows(self) -> int:
        """Rows the canaries add to the sampled set (the included ones)."""
        return int(self.ids.numel())

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Make ``weight`` the optimiser's last parameter (its own group, learning rate 0: the
        auditor reads its update and never needs it to move)."""
        optimizer.add_param_group({"params": [self.weight], "lr": 0.0, "weight_decay": 0.0})

    def split(self, idx: torch.Tensor, n_real: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A Poisson draw over real + canary rows → (real example indices, canary indices)."""
        real = idx < n_real
        return idx[real], self.ids[idx[~real] - n_real]

    def append_rows(self, params: list[nn.Parameter], canary: torch.Tensor) -> None:
        """Append the canaries' per-sample gradients to every parameter's (before clipping)."""
        n = len(canary)
        classifier = [p for p in params if p is not self.weight]
        n_real = len(classifier[0].grad_sample) if classifier else 0
        for p in classifier:
            p.grad_sample = torch.cat([p.grad_sample, p.grad_sample.new_zeros((n, *p.shape))])
        rows = self.weight.new_zeros((n_real + n, self.m))
        rows[n_real + torch.arange(n), canary] = GRADIENT_SCALE * self.clip
        self.weight.grad_sample = rows
        self.rows_per_step.append(n)

    def observe(self, optimizer) -> None:
        """Read this step's noisy update of ``weight`` (after the optimiser's step)."""
        o = (self.weight.grad.detach().double().cpu().numpy() * optimizer.expected_batch_size) / self.clip
        self._record(o)

    def observe_plain(self, canary: torch.Tensor) -> None:
        """A non-private step: no clipping, no noise, so the auditor sees which canaries were sampled."""
        o = np.zeros(self.m)
        o[canary.numpy()] = 1.0
        self.rows_per_step.append(len(canary))
        self._record(o)

    def _record(self, o: np.ndarray) -> None:
        self.sum_observed += o
        if self.sigma > 0:
            self.sum_log_ratio += per_step_log_ratio((2.0 * o - 1.0) / (2.0 * self.sigma**2), self.sample_rate)
        self.steps += 1

    def scores(self, observation: str) -> np.ndarray:
        """The auditor's score per canary (higher = more likely included)."""
        if observation == "all_iterates" and self.sigma > 0:
            return self.sum_log_ratio.copy()
        return self.sum_observed.copy()
