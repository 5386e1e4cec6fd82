"""The one-run audits as registry entries: image canaries in an extra run, gradient canaries in the target's.

One extra training run with the target's recipe, in which each of m held-out canaries (the image
with a flipped label, or an inverted image) is included with probability ½; the auditor sees only
the final model's outputs on the canaries and guesses the inclusion of the highest- and
lowest-scoring ones. Training the run lives in benchmark/audit_training.py, the bound in
``medprivbench.attacks.auditing``.

The white-box audit (gradient canaries in the target's own training) records, per observation:
the guess counts, each analysis' bound (with its r, v and search flags), and the ceiling on the
idealised mechanism: ``ceiling`` (mean over the idealised runs, at the guess counts that did best
on them, so biased upward), ``ceiling_sd`` (its sample standard deviation over those runs, NaN for
one), ``ceiling_at_limit`` (the share of them whose bound is a limit of the analysis) and
``ceiling_runs`` (how many). Its typed result and its table columns are the audit family's
(benchmark/families/audit.py ``WhiteboxResult``).
"""

from __future__ import annotations

import logging

import numpy as np

from medprivbench.attacks import auditing, membership
from medprivbench.attacks.canary_audit import GradientCanaryAuditConfig, IdealisedRuns, analyse, choose_guesses

from . import tasks
from .canaries import GradientCanaries
from .errors import ConfigError
from .families import family
from .families.audit import AuditResult, WhiteboxResult
from .registry import Attack, register_attack
from .audit_training import AuditRunResult, make_canaries, train_audit_run

log = logging.getLogger("medprivbench")

THREAT_MODEL = ("auditor who inserts canaries (held-out images with a wrong label), each with probability 1/2, into one "
                "training run and sees only the final model's outputs on them")


def canary_score(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Black-box canary score: the scaled confidence φ of the canary's (wrong) label, or of a
    segmenter's (wrong) mask: φ of its per-image loss signal (benchmark/segmentation.py)."""
    if labels.ndim > 1:
        signal = tasks.SEGMENTATION.image_signals(logits, labels)["loss"]
        return membership.logit_confidence(signal, np.zeros(len(labels), dtype=np.int64))
    return membership.logit_confidence(logits, labels)


def audit_summary(result: AuditRunResult, delta: float, *, guess_fraction: float, alpha: float) -> dict:
    m = len(result.scores)
    k = max(1, int(round(guess_fraction * m)))
    out = auditing.one_run_audit(result.scores, result.included, delta, k_plus=k, k_minus=k, alpha=alpha)
    out["n_included"] = int(result.included.sum())
    out["wall_time_s"] = result.wall_time_s
    return out


@register_attack
class OneRunAudit(Attack):
    name, label, schema = "audit", "one-run audit", auditing.CanaryAuditConfig
    family, threat, threat_model = family("audit"), "worst_case_audit", THREAT_MODEL

    def lower_bounds(self, settings) -> int:
        return 1

    def run(self, ctx, settings: auditing.CanaryAuditConfig) -> AuditResult:
        ds = ctx.ds
        held_x = np.concatenate([a for a in (ds.val_x, ds.test_x) if a is not None and len(a)])
        held_y = np.concatenate([a for a in (ds.val_y, ds.test_y) if a is not None and len(a)])
        streams = ctx.streams.of("audit")
        cx, cy = make_canaries(settings.canary, held_x, held_y, int(settings.n_canaries), ds.info.n_classes, streams.numpy("canaries"))
        log.info("%s one-run audit: training once with %d %s canaries, each included with probability 1/2", ctx.label, len(cy), settings.canary)
        result = train_audit_run(
            build=ctx.build_model, x=ctx.x_train, y=ctx.y_train, canary_x=cx, canary_y=cy, recipe=ctx.recipe, hp=ctx.hp,
            grad_sample_mode=ctx.grad_sample_mode, streams=streams, device=ctx.device, score=canary_score,
            feature_fn=ctx.feature_fn(), features=ctx.train_features, task=ctx.task.name,
        )
        out = audit_summary(result, float(ctx.cfg.privacy.delta), guess_fraction=settings.guess_fraction, alpha=ctx.bound_alpha)
        out["canary"] = settings.canary
        return AuditResult.from_record({**out, "threat_model": self.threat_model})


# ----------------------------------------------------------------------------- the white-box audit
WHITEBOX_THREAT = ("auditor of the DP guarantee itself: inserts gradient canaries (each with probability 1/2) into the "
                   "target's own training, where they are sampled, clipped and noised like every example, and observes "
                   "every noisy update (all iterates, as a federated server does) or only the sum of the updates (the "
                   "final model of plain SGD at a constant learning rate)")


@register_attack
class Whitebox(Attack):
    name, label, schema = "whitebox", "white-box canary audit", GradientCanaryAuditConfig
    family, threat, threat_model = family("audit"), "worst_case_audit", WHITEBOX_THREAT

    def lower_bounds(self, settings) -> int:
        return len(settings.observations) * len(settings.analyses)

    def instrument(self, ctx, settings: GradientCanaryAuditConfig) -> GradientCanaries:
        """The canaries that join the target's training; their inclusion is drawn from their own stream."""
        included = ctx.streams.of("whitebox").numpy("membership").random(settings.n_canaries) < 0.5
        view = ctx.recipe.attacker_view  # the claimed recipe: the scores use its σ and q
        return GradientCanaries(included, sample_rate=view.sample_rate, noise_multiplier=view.noise_multiplier,
                                max_grad_norm=view.simulation_clip)

    def run(self, ctx, settings: GradientCanaryAuditConfig) -> WhiteboxResult:
        canaries: GradientCanaries = ctx.instruments["whitebox"]
        view = ctx.recipe.attacker_view
        delta = float(ctx.cfg.privacy.delta)
        out = {"threat_model": self.threat_model, "m": canaries.m, "n_included": int(canaries.included.sum()),
               "canary_rows_per_step": float(np.mean(canaries.rows_per_step)) if canaries.rows_per_step else 0.0,
               "alpha": ctx.bound_alpha, "observations": {}}
        for index, observation in enumerate(settings.observations):
            ideal = IdealisedRuns(view.noise_multiplier, view.sample_rate, view.steps, canaries.m, observation,
                                  settings.ceiling_simulations, seed=ctx.streams.of("whitebox", index).seed_for("attack"))
            choice = choose_guesses(ideal, delta=delta, alpha=ctx.bound_alpha, analyses=settings.analyses)
            k_plus, k_minus, ceiling = choice.k_plus, choice.k_minus, choice.ceiling
            found = analyse(canaries.scores(observation), canaries.included, delta=delta, alpha=ctx.bound_alpha, k_plus=k_plus,
                            k_minus=k_minus, sample_rate=view.sample_rate, steps=view.steps, analyses=settings.analyses)
            out["observations"][observation] = {
                "k_plus": k_plus, "k_minus": k_minus, "ceiling": ceiling, "ceiling_sd": choice.ceiling_sd,
                "ceiling_at_limit": choice.ceiling_at_limit, "ceiling_runs": choice.n_simulations,
                "bounds": {name: {k: v for k, v in result.items() if isinstance(v, (int, float, str))} for name, result in found.items()},
            }
            log.info("%s white-box audit (%s): %s; ceiling (mean ± sd over %d idealised runs) %s", ctx.label, observation,
                     ", ".join(f"{n} {r['epsilon_lb']:.3g}" for n, r in found.items()), choice.n_simulations,
                     ", ".join(f"{n} {c:.3g} ± {choice.ceiling_sd[n]:.2g}" for n, c in ceiling.items()))
        out["epsilon_lb"] = max(b["epsilon_lb"] for o in out["observations"].values() for b in o["bounds"].values())
        return WhiteboxResult.from_record(out)

    def check(self, settings, cfg) -> None:
        from .models import grad_sample_mode

        if grad_sample_mode(cfg.model) == "ghost":
            raise ConfigError("attack whitebox needs per-sample gradients to add its canaries' rows; ghost clipping never "
                              "forms them: use model.grad_sample_mode=hooks or ew")
