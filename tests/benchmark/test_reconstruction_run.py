"""benchmark/reconstruction_run.py directly: the ReRo bounds of a recipe against their closed form,
the table columns, the data check of the reconstruction entries and the helpers that summarise and
match an imprint attack's candidates."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from scipy.stats import norm

from medprivbench.attacks.image_metrics import reconstruction_report
from medprivbench.attacks.imprint import ImprintConfig
from medprivbench.attacks.prior_aware import PriorAwareConfig
from medprivbench.attacks.reconstruction import GradientInversionConfig
from medprivbench.benchmark import reconstruction_run, registry
from medprivbench.benchmark.errors import ConfigError
from medprivbench.benchmark.families.reconstruction import ReconstructionResult
from medprivbench.benchmark.training import DPRecipe

N_TRAIN = 300


def _recipe(sigma: float, *, q: float = 0.25, steps: int = 8, private: bool = True) -> DPRecipe:
    return DPRecipe(epsilon_target=1.0 if private else math.inf, delta=1e-5, sample_rate=q, steps=steps,
                    steps_per_epoch=round(1 / q), noise_multiplier=sigma if private else 0.0,
                    max_grad_norm=1.0 if private else math.inf, accountant="rdp" if private else "none")


def _gaussian_dp_gamma(kappa: float, sigma: float, steps: int) -> float:
    """Full-batch DP-SGD is μ-GDP with μ = √T/σ; its power at level κ (Dong, Roth & Su 2022)."""
    return float(norm.cdf(norm.ppf(kappa) + math.sqrt(steps) / sigma))


# ----------------------------------------------------------------------------- rero_bounds
@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
def test_step_bound_is_the_closed_form_of_one_unsubsampled_step(sigma):
    bounds = reconstruction_run.rero_bounds(_recipe(sigma), N_TRAIN, {})
    step = bounds["rero_step"]
    assert step["kappa"] == pytest.approx(1 / N_TRAIN)
    assert step["gamma"] == pytest.approx(_gaussian_dp_gamma(1 / N_TRAIN, sigma, 1), rel=1e-9)
    assert bounds["noise_multiplier"] == sigma and bounds["sample_rate"] == 0.25 and bounds["steps"] == 8


def test_full_batch_recipe_gives_the_closed_form_for_all_steps():
    sigma, steps = 2.0, 9
    bounds = reconstruction_run.rero_bounds(_recipe(sigma, q=1.0, steps=steps), N_TRAIN,
                                            {"prior_aware": PriorAwareConfig(n_candidates=7)})
    assert bounds["rero_train"]["gamma"] == pytest.approx(_gaussian_dp_gamma(1 / N_TRAIN, sigma, steps), rel=1e-9)
    assert bounds["rero_prior"]["gamma"] == pytest.approx(_gaussian_dp_gamma(1 / 7, sigma, steps), rel=1e-9)


def test_prior_kappa_is_one_over_the_configured_candidates_or_the_default():
    recipe = _recipe(1.0)
    configured = reconstruction_run.rero_bounds(recipe, N_TRAIN, {"prior_aware": PriorAwareConfig(n_candidates=4)})
    default = reconstruction_run.rero_bounds(recipe, N_TRAIN, {"loss": object()})
    assert configured["rero_prior"]["kappa"] == pytest.approx(1 / 4)
    assert default["rero_prior"]["kappa"] == pytest.approx(1 / PriorAwareConfig().n_candidates) == pytest.approx(0.1)
    assert configured["rero_train"]["kappa"] == default["rero_train"]["kappa"] == pytest.approx(1 / N_TRAIN)
    # a broader prior (more candidates) can only make reconstruction harder
    assert configured["rero_prior"]["gamma"] > default["rero_prior"]["gamma"] > default["rero_train"]["gamma"]


def test_bounds_fall_as_the_noise_grows_and_never_below_chance():
    gammas = {key: [] for key in ("rero_prior", "rero_train", "rero_step")}
    for sigma in (0.6, 0.9, 1.5, 3.0, 8.0):
        bounds = reconstruction_run.rero_bounds(_recipe(sigma), N_TRAIN, {})
        for key in gammas:
            gammas[key].append(bounds[key]["gamma"])
            assert bounds[key]["kappa"] <= bounds[key]["gamma"] <= 1.0
    for key, values in gammas.items():
        assert all(a > b for a, b in zip(values, values[1:])), (key, values)
    # one subsampled step of T is weaker than T full steps: the subsampled bound lies below the full-batch one
    assert gammas["rero_train"][1] < _gaussian_dp_gamma(1 / N_TRAIN, 0.9, 8)


def test_without_dp_every_bound_is_certain_success():
    bounds = reconstruction_run.rero_bounds(_recipe(0.0, private=False), N_TRAIN, {})
    assert bounds["noise_multiplier"] == 0.0
    assert [bounds[k]["gamma"] for k in ("rero_prior", "rero_train", "rero_step")] == [1.0, 1.0, 1.0]


# ----------------------------------------------------------------------------- columns and checks
def test_reconstruction_columns():
    result = {"psnr_mean": 14.5, "ssim_mean": 0.21, "rero": {"psnr": 0.25, "ssim": 0.5}, "psnr_max": 99.0}
    assert ReconstructionResult.from_record(result).columns("imprint") == {
        "recon_imprint_psnr_mean": 14.5, "recon_imprint_ssim_mean": 0.21,
        "recon_imprint_rero_psnr": 0.25, "recon_imprint_rero_ssim": 0.5}


@pytest.mark.parametrize("name, settings, attacked", [
    ("gradient_inversion", GradientInversionConfig(n_images=12, batch_size=4), 12),
    ("dlg", GradientInversionConfig(n_images=6, batch_size=1), 6),
    ("imprint", ImprintConfig(batch_size=5, n_batches=3), 15),
])
def test_an_attack_cannot_take_more_training_images_than_there_are(name, settings, attacked):
    check = registry.ATTACKS[name].check_data
    cfg = OmegaConf.create({"dataset": {"size": 28}})
    check(settings, cfg, attacked)  # exactly enough
    with pytest.raises(ConfigError, match=rf"attack\.{name}\.n_images={attacked} is more than the {attacked - 1} training images"):
        check(settings, cfg, attacked - 1)
    cfg.dataset.size = 10  # below the 11-pixel SSIM window
    with pytest.raises(ConfigError, match=rf"dataset.size=10 is too small for attack '{name}'"):
        check(settings, cfg, attacked)


# ----------------------------------------------------------------------------- _summary and _matched
def test_summary_is_mean_and_max_over_matched_images_only():
    per_image = {"psnr": [10.0, None, 30.0], "ssim": [0.1, None, 0.5], "mse": [0.2, None, 0.0], "ncc": [None, None, None]}
    summary = reconstruction_run._summary(per_image)
    assert summary["psnr_mean"] == 20.0 and summary["psnr_max"] == 30.0
    assert summary["ssim_mean"] == pytest.approx(0.3) and summary["ssim_max"] == 0.5
    assert summary["mse_mean"] == pytest.approx(0.1)
    assert math.isnan(summary["ncc_mean"])  # no image matched
    assert set(summary) == {"psnr_mean", "psnr_max", "ssim_mean", "ssim_max", "mse_mean", "ncc_mean"}


def test_summary_of_one_batch_equals_the_reports_own_means():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(4, 1, 12, 12, generator=g)
    candidates = (truth[[2, 0, 1]] + 0.05 * torch.randn(3, 1, 12, 12, generator=g)).clamp(0, 1)  # one image unmatched
    report = reconstruction_report(truth, candidates)
    summary = reconstruction_run._summary(report["per_image"])
    for key, value in summary.items():
        assert value == pytest.approx(report[key]), key


def test_matched_puts_each_true_images_candidate_in_its_place():
    candidates = torch.arange(3 * 4, dtype=torch.float32).view(3, 1, 2, 2) + 1.0
    truth = torch.zeros(4, 1, 2, 2)
    out = reconstruction_run._matched(candidates, {"matched_candidate": [2, None, -1, 0]}, truth)
    assert torch.equal(out[0], candidates[2]) and torch.equal(out[3], candidates[0])
    assert torch.equal(out[1], torch.zeros(1, 2, 2)) and torch.equal(out[2], torch.zeros(1, 2, 2))  # blank where unmatched
    assert out.shape == truth.shape


def test_matched_recovers_a_shuffled_batch_from_the_report():
    g = torch.Generator().manual_seed(1)
    truth = torch.rand(5, 1, 12, 12, generator=g)
    decoy = torch.full((1, 1, 12, 12), 0.5)
    candidates = torch.cat([truth[[3, 1, 4, 0, 2]], decoy])
    report = reconstruction_report(truth, candidates)
    assert torch.equal(reconstruction_run._matched(candidates, report, truth), truth)
    fewer = candidates[:3]  # only truth 3, 1 and 4 have a candidate
    out = reconstruction_run._matched(fewer, reconstruction_report(truth, fewer), truth)
    assert [bool(torch.equal(out[i], truth[i])) for i in range(5)] == [False, True, False, True, True]
    assert float(out[[0, 2]].abs().sum()) == 0.0
