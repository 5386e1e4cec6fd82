"""Reconstruction attacks for one run and the ReRo bounds beside them.

The bounds (Hayes, Mahloujifar, Balle 2023) depend only on the run's DP recipe (σ, q, T) and a
base rate κ: κ = 1/n for the prior-aware attack's n candidates, κ = 1/N for an adversary whose
prior is the whole training set (the setting of Ziller et al. 2024).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from medprivbench.attacks.bounds import rero_bound
from medprivbench.attacks.prior_aware import prior_aware_attack

from .models import split_frozen

log = logging.getLogger("medprivbench")

# Clip norm handed to the prior-aware game for non-private runs (no clipping, no noise): far
# above any per-sample gradient norm, so clipping never acts.
UNCLIPPED = 1e6


def rero_bounds(recipe, n_train: int, n_candidates: int) -> dict:
    sigma = recipe.noise_multiplier if recipe.private else 0.0

    def bound(kappa: float) -> float:
        return float(rero_bound(kappa, sigma, recipe.sample_rate, recipe.steps))

    return {
        "rero_prior": {"kappa": 1.0 / n_candidates, "gamma": bound(1.0 / n_candidates)},
        "rero_train": {"kappa": 1.0 / n_train, "gamma": bound(1.0 / n_train)},
        "noise_multiplier": sigma, "sample_rate": recipe.sample_rate, "steps": recipe.steps,
    }


def prior_aware_stage(ctx, settings, checkpoints: list[dict]) -> dict:
    """The informed adversary's game on the target's real model states and training images."""
    recipe = ctx.recipe
    rng = np.random.default_rng(30_000 + int(ctx.cfg.seed))
    pool = np.sort(rng.choice(ctx.ds.n_train, size=min(settings.pool_size, ctx.ds.n_train), replace=False))
    inputs = torch.from_numpy(ctx.ds.train_x[pool])
    states = []
    for state in checkpoints:
        model = ctx.build_model(0)
        model.load_state_dict(state)
        frozen, trainable = split_frozen(model.eval())
        states.append(trainable)
    if ctx.train_features is not None:  # fixed features: gradients are the head's, on the features
        inputs = ctx.train_features[torch.from_numpy(pool)]
    clip = recipe.max_grad_norm if math.isfinite(recipe.max_grad_norm) else UNCLIPPED
    result = prior_aware_attack(
        states, inputs, torch.from_numpy(ctx.ds.train_y[pool]),
        noise_multiplier=recipe.noise_multiplier if recipe.private else 0.0,
        sample_rate=recipe.sample_rate, steps=recipe.steps, max_grad_norm=clip,
        n_candidates=settings.n_candidates, n_trials=settings.trials, seed=int(ctx.cfg.seed), device=ctx.device,
    )
    out = result.to_record()
    log.info("%s prior-aware reconstruction: success %.3f [%.3f, %.3f] vs ReRo bound %.3f (chance %.3f)",
             ctx.label, result.success_rate, result.ci_low, result.ci_high, result.bound, result.chance)
    return out
