"""The one-run audit with image canaries (Steinke, Nasr, Jagielski 2023) as a registry entry.

One extra training run with the target's recipe, in which each of m held-out canaries (the image
with a flipped label, or an inverted image) is included with probability ½; the auditor sees only
the final model's outputs on the canaries and guesses the inclusion of the highest- and
lowest-scoring ones. Training the run lives in benchmark/shadow.py, the bound in
``medprivbench.attacks.auditing``.
"""

from __future__ import annotations

import logging

import numpy as np

from medprivbench.attacks import auditing, membership

from .registry import AttackSpec, register
from .shadow import AuditRunResult, make_canaries, train_audit_run

log = logging.getLogger("medprivbench")

THREAT_MODEL = ("auditor who inserts canaries (held-out images with a wrong label), each with probability 1/2, into one "
                "training run and sees only the final model's outputs on them")


def canary_score(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Black-box canary score: the scaled confidence φ of the canary's (wrong) label."""
    return membership.logit_confidence(logits, labels)


def audit_summary(result: AuditRunResult, delta: float, *, guess_fraction: float, alpha: float) -> dict:
    m = len(result.scores)
    k = max(1, int(round(guess_fraction * m)))
    out = auditing.one_run_audit(result.scores, result.included, delta, k_plus=k, k_minus=k, alpha=alpha)
    out["n_included"] = int(result.included.sum())
    out["wall_time_s"] = result.wall_time_s
    return out


def run_audit(ctx, settings: auditing.CanaryAuditConfig) -> dict:
    ds = ctx.ds
    held_x = np.concatenate([a for a in (ds.val_x, ds.test_x) if a is not None and len(a)])
    held_y = np.concatenate([a for a in (ds.val_y, ds.test_y) if a is not None and len(a)])
    streams = ctx.streams.of("audit")
    cx, cy = make_canaries(settings.canary, held_x, held_y, int(settings.n_canaries), ds.info.n_classes, streams.numpy("canaries"))
    log.info("%s one-run audit: training once with %d %s canaries, each included with probability 1/2", ctx.label, len(cy), settings.canary)
    result = train_audit_run(
        build=ctx.build_model, x=ctx.x_train, y=ctx.y_train, canary_x=cx, canary_y=cy, recipe=ctx.recipe, hp=ctx.hp,
        grad_sample_mode=ctx.grad_sample_mode, streams=streams, device=ctx.device, score=canary_score,
        feature_fn=ctx.feature_fn(), features=ctx.train_features,
    )
    out = audit_summary(result, float(ctx.cfg.privacy.delta), guess_fraction=settings.guess_fraction, alpha=ctx.bound_alpha)
    out["canary"] = settings.canary
    out["threat_model"] = THREAT_MODEL
    return out


register(AttackSpec(
    name="audit", schema=auditing.CanaryAuditConfig, label="one-run audit", family="audit", threat_model=THREAT_MODEL,
    run=run_audit, columns=lambda name, result: {"audit_epsilon_lb": result["epsilon_lb"]}, lower_bounds=lambda s: 1,
))
