"""Reconstruction attacks on a trained run, as registry entries, and the ReRo bounds beside them.

The bounds (Hayes, Mahloujifar, Balle 2023) depend only on the run's DP recipe (σ, q, T) and a
base rate κ: κ = 1/n for the prior-aware attack's n candidates, κ = 1/N for an adversary whose
prior is the whole training set (the setting of Ziller et al. 2024). Gradient inversion and the
imprint attack see one unsubsampled client update; the prior-aware adversary sees all T steps.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from medprivbench.attacks import image_metrics
from medprivbench.attacks import reconstruction as rec
from medprivbench.attacks.bounds import rero_bound
from medprivbench.attacks.imprint import ImprintAttack, ImprintConfig, imprint_client_update
from medprivbench.attacks.prior_aware import THREAT_MODEL as PRIOR_AWARE_THREAT
from medprivbench.attacks.prior_aware import PriorAwareConfig, prior_aware_attack

from . import tasks
from .errors import ConfigError
from .families import family
from .families.prior_aware import PriorAwareResult
from .families.reconstruction import ReconstructionResult
from .models import split_frozen
from .registry import Attack, register_attack

log = logging.getLogger("medprivbench")


def rero_bounds(recipe, n_train: int, settings: dict) -> dict:
    """The ReRo bounds of the run's recipe at κ = 1/N, at κ = 1/n for the prior-aware attack's n
    candidates (its configured n, or its default when it is not run) and for one client step."""
    n_candidates = (settings.get("prior_aware") or PriorAwareConfig()).n_candidates
    view = recipe.attacker_view
    sigma = view.noise_multiplier

    def bound(kappa: float) -> float:
        return float(rero_bound(kappa, sigma, view.sample_rate, view.steps))

    return {
        "rero_prior": {"kappa": 1.0 / n_candidates, "gamma": bound(1.0 / n_candidates),
                       "threat_model": "all T subsampled steps (prior-aware adversary, the DP guarantee)"},
        "rero_train": {"kappa": 1.0 / n_train, "gamma": bound(1.0 / n_train),
                       "threat_model": "all T subsampled steps (prior-aware adversary, the DP guarantee)"},
        # gradient inversion and imprint attack one client's update: one step, no subsampling
        "rero_step": {"kappa": 1.0 / n_train, "gamma": float(rero_bound(1.0 / n_train, sigma, 1.0, 1)),
                      "threat_model": "one unsubsampled client update (q = 1, T = 1): gradient inversion, imprint"},
        "noise_multiplier": sigma, "sample_rate": view.sample_rate, "steps": view.steps,
    }


def run_prior_aware(ctx, settings: PriorAwareConfig) -> PriorAwareResult:
    """The informed adversary's game on the target's real model states and training images."""
    view = ctx.recipe.attacker_view
    streams = ctx.streams.of("prior_aware")
    rng = streams.numpy("attack")
    pool = np.sort(rng.choice(ctx.ds.n_train, size=min(settings.pool_size, ctx.ds.n_train), replace=False))
    inputs = torch.from_numpy(ctx.ds.train_x[pool])
    states = []
    for state in ctx.checkpoints:
        model = ctx.build_model(streams)  # the architecture; the weights are the state's
        model.load_state_dict(state)
        frozen, trainable = split_frozen(model.eval())
        states.append(trainable)
    if ctx.train_features is not None:  # fixed features: gradients are the head's, on the features
        inputs = ctx.train_features[torch.from_numpy(pool)]
    result = prior_aware_attack(
        states, inputs, torch.from_numpy(ctx.ds.train_y[pool]),
        noise_multiplier=view.noise_multiplier, sample_rate=view.sample_rate, steps=view.steps,
        max_grad_norm=view.simulation_clip, n_candidates=settings.n_candidates, n_trials=settings.trials,
        seed=streams.seed_for("client_noise"), device=ctx.device, loss_fn=ctx.task.criterion(),
    )
    out = PriorAwareResult.from_record(result.to_record())
    log.info("%s prior-aware reconstruction: success %.3f [%.3f, %.3f] vs ReRo bound %.3f (chance %.3f)",
             ctx.label, result.success_rate, result.ci_low, result.ci_high, result.bound, result.chance)
    return out


def _attacked_images(ctx, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` training images (members: the patients whose data the update carries)."""
    pick = np.sort(rng.choice(ctx.ds.n_train, size=n, replace=False))
    return torch.from_numpy(ctx.ds.train_x[pick]), torch.from_numpy(ctx.ds.train_y[pick])


def _grid_title(ctx, name: str) -> str:
    info = ctx.ds.info
    return f"{name.replace('_', ' ')}: truth (top) and reconstruction; {info.name} {ctx.cfg.model.name}, {ctx.epsilon_text}, seed {ctx.cfg.seed}"


def gradient_inversion(ctx, name: str, settings: rec.GradientInversionConfig, threat_model: str) -> ReconstructionResult:
    """Invert client updates of training images at the run's σ and C; score against the truth."""
    streams = ctx.streams.of(name)
    # the target's initial weights θ₀ (its own init stream) or its trained weights
    model = (ctx.build_model(ctx.streams) if settings.model_state == "init" else ctx.target).to(ctx.device).eval()
    view = ctx.recipe.attacker_view
    sigma, clip = view.noise_multiplier, view.max_grad_norm
    images, labels = _attacked_images(ctx, settings.n_images, streams.numpy("attack"))
    noise = streams.torch("client_noise", ctx.device)
    updates = []
    for start in range(0, settings.n_images, settings.batch_size):
        xb = images[start : start + settings.batch_size].to(ctx.device)
        yb = labels[start : start + settings.batch_size].to(ctx.device)
        # the client's side: its DP-SGD update is all the attacker receives
        updates.append(rec.simulate_client_update(
            model, xb, yb, noise_multiplier=sigma, max_grad_norm=clip, reveal_labels=settings.labels == "known",
            generator=noise, method="loop" if ctx.train_features is not None else "vmap", loss_fn=ctx.task.criterion()))
    threat = updates[0].threat_model()
    # all updates optimised together
    result = rec.run_gradient_inversion(model, updates, settings, seed=streams.seed_for("attack"), loss_fn=ctx.task.criterion())
    seconds = result.seconds
    truth_t, recon_t = images, result.images.cpu().reshape(images.shape)
    # scoring: the only place the true images meet the reconstructions
    report = image_metrics.reconstruction_report(truth_t, recon_t, eta={"psnr": settings.eta_psnr, "ssim": settings.eta_ssim})
    grid = f"reconstructions/{name}.png"
    image_metrics.save_image_grid(truth_t, recon_t, ctx.writer.path(grid), title=_grid_title(ctx, name))
    out = {
        "threat_model": f"{threat_model}; {threat['observes']}, labels {threat['labels']}",
        **{k: report[k] for k in ("psnr_mean", "psnr_max", "ssim_mean", "ssim_max", "mse_mean", "ncc_mean")},
        "rero": {k: report[f"rero_{k}"] for k in ("psnr", "ssim")},
        "eta": {"psnr": settings.eta_psnr, "ssim": settings.eta_ssim},
        "per_image": report["per_image"],
        "n_images": settings.n_images, "batch_size": settings.batch_size, "model_state": settings.model_state,
        "config": result.summary()["config"], "trial_iterations_per_s": result.trial_iterations_per_second,
        "wall_time_s": seconds, "grid": grid,
    }
    log.info("%s %s: mean PSNR %.1f dB, SSIM %.3f, ReRo@%g dB %.2f (%d images, B=%d, %.0f s)", ctx.label, name,
             out["psnr_mean"], out["ssim_mean"], settings.eta_psnr, out["rero"]["psnr"], settings.n_images,
             settings.batch_size, seconds)
    return ReconstructionResult.from_record(out)


def run_imprint(ctx, settings: ImprintConfig, threat_model: str) -> ReconstructionResult:
    """A malicious server's imprint model; the client's DP-SGD update on it; images read back."""
    streams = ctx.streams.of("imprint")
    base = (ctx.build_model(ctx.streams) if settings.model_state == "init" else ctx.target).to(ctx.device).eval()
    view = ctx.recipe.attacker_view
    sigma, clip = view.noise_multiplier, view.max_grad_norm
    attack = ImprintAttack(tuple(ctx.ds.train_x.shape[1:]), settings.n_bins, ctx.ds.test_x,
                           measurement=settings.measurement, n_measurements=settings.n_measurements,
                           back_gain=settings.back_gain, seed=streams.seed_for("attack"))
    n = settings.batch_size * settings.n_batches
    images, labels = _attacked_images(ctx, n, streams.numpy("attack"))
    noise = streams.torch("client_noise", ctx.device)
    reports, truth_all, recon_all, seconds = [], [], [], 0.0
    start = time.perf_counter()
    for b in range(settings.n_batches):
        xb = images[b * settings.batch_size : (b + 1) * settings.batch_size]
        yb = labels[b * settings.batch_size : (b + 1) * settings.batch_size]
        # the client trains the model the server sent; only its DP-SGD update goes back
        _, update = imprint_client_update(attack, base, xb.to(ctx.device), yb.to(ctx.device), noise_multiplier=sigma,
                                          max_grad_norm=clip, generator=noise, loss_fn=ctx.task.criterion())
        candidates = attack.reconstruct(update).cpu()
        # scoring, apart from the attack: match candidates to the batch's true images
        reports.append(image_metrics.reconstruction_report(xb, candidates, eta={"psnr": settings.eta_psnr, "ssim": settings.eta_ssim}))
        truth_all.append(xb)
        recon_all.append(_matched(candidates, reports[-1], xb))
    seconds = time.perf_counter() - start
    per_image = {k: [v for r in reports for v in r["per_image"][k]] for k in reports[0]["per_image"]}
    grid = "reconstructions/imprint.png"
    image_metrics.save_image_grid(torch.cat(truth_all)[:16], torch.cat(recon_all)[:16], ctx.writer.path(grid),
                                  title=_grid_title(ctx, "imprint"))
    out = {
        "threat_model": f"{threat_model}; {attack.threat_model().get('observes', '')}".rstrip("; "),
        **_summary(per_image),
        "rero": {k: image_metrics.rero(per_image[k], k, getattr(settings, f"eta_{k}")) for k in ("psnr", "ssim")},
        "eta": {"psnr": settings.eta_psnr, "ssim": settings.eta_ssim},
        "per_image": per_image, "n_images": n, "batch_size": settings.batch_size, "n_bins": settings.n_bins,
        "candidates_per_batch": [r["n_candidates"] for r in reports], "model_state": settings.model_state,
        "wall_time_s": seconds, "grid": grid,
    }
    log.info("%s imprint: mean PSNR %.1f dB, ReRo@%g dB %.2f (%d images in batches of %d, %.1f s)", ctx.label,
             out["psnr_mean"], settings.eta_psnr, out["rero"]["psnr"], n, settings.batch_size, seconds)
    return ReconstructionResult.from_record(out)


def _matched(candidates: torch.Tensor, report: dict, truth: torch.Tensor) -> torch.Tensor:
    """The candidate matched to each true image (a blank image where none was)."""
    out = torch.zeros_like(truth)
    for i, c in enumerate(report["matched_candidate"]):
        if c is not None and c >= 0:
            out[i] = candidates[c]
    return out


def _summary(per_image: dict) -> dict:
    """Mean and max of each metric over the matched images (unmatched ones are None)."""
    out = {}
    for k in ("psnr", "ssim", "mse", "ncc"):
        values = [v for v in per_image[k] if v is not None]
        out[f"{k}_mean"] = float(np.mean(values)) if values else float("nan")
        if k in ("psnr", "ssim"):
            out[f"{k}_max"] = float(np.max(values)) if values else float("nan")
    return out


def _check_images(attribute: str):
    """check_data: the attack cannot take more training images than there are, and its SSIM needs
    images (or volumes) of at least the window's 11 pixels a side."""

    def check(settings, cfg, n_train: int) -> None:
        n_images = getattr(settings, "n_images", None) or settings.batch_size * settings.n_batches
        if n_images > n_train:
            raise ConfigError(f"attack.{attribute}.n_images={n_images} is more than the {n_train} training images")
        if int(cfg.dataset.size) < image_metrics.SSIM_WINDOW:
            raise ConfigError(f"dataset.size={cfg.dataset.size} is too small for attack {attribute!r}: its SSIM needs at least "
                              f"{image_metrics.SSIM_WINDOW} pixels a side; use dataset.size >= {image_metrics.SSIM_WINDOW} "
                              "or leave the attack out")

    return check


@register_attack
class PriorAware(Attack):
    name, label, schema = "prior_aware", "prior-aware reconstruction", PriorAwareConfig
    family, threat, threat_model = family("prior_aware"), "informed_adversary", PRIOR_AWARE_THREAT

    def run(self, ctx, settings: PriorAwareConfig) -> PriorAwareResult:
        return run_prior_aware(ctx, settings)

    def checkpoints(self, settings: PriorAwareConfig) -> int:
        return settings.n_states


class ServerAttack(Attack):
    """An attack of a server on one client's update: it needs training images of at least the SSIM window."""

    family = family("reconstruction")

    def check_data(self, settings, cfg, n_train: int) -> None:
        _check_images(self.name)(settings, cfg, n_train)


@register_attack
class GradientInversion(ServerAttack):
    name, label, schema, threat = "gradient_inversion", "gradient inversion", rec.GradientInversionConfig, "curious_server"
    threat_model = ("honest-but-curious server (Geiping et al. 2020): optimises images whose gradient matches the "
                    "client's update (cosine distance + total variation)")

    def run(self, ctx, settings: rec.GradientInversionConfig) -> ReconstructionResult:
        return gradient_inversion(ctx, self.name, settings, self.threat_model)

    def check(self, settings, cfg) -> None:
        if tasks.of_config(cfg).segmentation and settings.labels != "known":
            raise ConfigError(f"attack.{self.name}.labels={settings.labels!r} is not valid for task=segmentation: a mask cannot "
                              f"be recovered from the last layer like a label; use attack.{self.name}.labels=known "
                              "(the server is granted the masks, the strongest attacker)")


@register_attack
class DLG(GradientInversion):
    name, label, defaults = "dlg", "DLG", rec.GradientInversionConfig(**vars(rec.DLG_2019))
    threat_model = "honest-but-curious server (Zhu et al. 2019, DLG baseline): L2 gradient matching with L-BFGS"


@register_attack
class Imprint(ServerAttack):
    name, label, schema, threat = "imprint", "imprint (trap weights)", ImprintConfig, "malicious_server"
    threat_model = ("malicious server (Fowl et al. 2022, Robbing the Fed): sends a model with an imprint layer whose "
                    "weight-row gradients isolate single images")

    def run(self, ctx, settings: ImprintConfig) -> ReconstructionResult:
        return run_imprint(ctx, settings, self.threat_model)
