"""Malicious-server imprint ("trap weights") attack: Fowl, Geiping, Czaja, Goldblum & Goldstein,
"Robbing the Fed: directly obtaining private data in federated learning with modified models",
ICLR 2022 — the attack Ziller et al. 2024 ran against DP-SGD.

Threat model (DESIGN.md): the server may send the client *any* model. It prepends an imprint
block to the classifier and reads the images straight out of the client's DP-SGD update.

The block, for a flattened image x ∈ [0, 1]^d, with k bins:

    u_i = ReLU(γ·(⟨v_g(i), x⟩ − c_i)),   i = 1 … k,          out = x + w·(Σ_i u_i − γμ)·r,

i.e. a linear layer whose weight rows are measurement vectors v (the same v for all bins of a
group g; "mean": v = 1/d, the mean pixel intensity; "gaussian": random unit directions) and whose
biases are minus increasing cut-offs c_i, then ReLU and a linear map back to the input size whose
columns all equal w·r (r a fixed ±1 pixel pattern, w the back gain). The residual keeps the
classifier working: a small gain γ makes the change to the image tiny (its per-pixel standard
deviation on public images is ``perturbation``), while w sets how strongly the loss gradient
reaches the bins (the gain trick of Fowl et al.'s code). Because every column of the back map is
equal, each bin of image n receives the same gradient a_n = ∂ℓ/∂u_i = w·⟨r, ∂ℓ/∂out⟩. Hence,
for the bin weights W and biases b,

    ∇W_i = (1/B) Σ_{n: ⟨v, x_n⟩ > c_i} κ_n a_n x_n,     ∇b_i = (1/B) Σ_{n: ⟨v, x_n⟩ > c_i} κ_n a_n,

(κ_n the DP clipping factor of sample n), and for consecutive cut-offs of one measurement

    x̂ = (∇W_i − ∇W_{i+1}) / (∇b_i − ∇b_{i+1})

is exactly x_n when image n is the only one with c_i < ⟨v, x_n⟩ ≤ c_{i+1} (the top bin alone:
x̂ = ∇W_k / ∇b_k). Clipping scales a sample's whole gradient by κ_n, which cancels in the ratio;
only the Gaussian noise N(0, σ²C²/B²) on every coordinate protects the images. With a large w the
bins' gradient dominates each sample's gradient norm, so after clipping the signal per bin row
is about C/(B·√(active rows)) against noise σC/B per coordinate. Measured (default CNN, B = 16,
C = 1): σ = 10⁻⁴ still leaves ≈ 95 % of the images at PSNR ≥ 30 dB, σ = 10⁻³ none; realistic
σ (≳ 0.5) leaves only noise.

The cut-offs sit at quantiles of the measurement on public images (the server's prior), so each
bin catches an image with probability ≈ 1/k_g; the lowest cut-off is the smallest value ⟨v, x⟩
can take on [0, 1]^d, so every image activates the first bin. An image is lost when another image
shares its bin in every measurement: with one measurement and k bins about (1 − 1/k)^(B−1) of a
batch of B is recovered; several independent measurements (``n_measurements``) each with k/m bins
recover an image if it is alone in any of them, which needs fewer bins.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .client_update import ClientUpdate, simulate_client_update
from .image_metrics import as_image_batch
from .settings import Validated, choice, integer, real

MEASUREMENTS = ("mean", "gaussian")


@dataclass
class ImprintConfig(Validated):
    """The imprint attack as the benchmark runs it (Fowl et al. 2022, as Ziller et al. ran it): the
    server sends a model with an imprint block in front; ``n_batches`` client updates of
    ``batch_size`` training images are read back. The bins' cut-offs are quantiles of a
    measurement of public images (the test split, never training images)."""

    batch_size: int = integer(16, 1)
    n_batches: int = integer(1, 1)
    n_bins: int = integer(128, 2)
    measurement: str = choice("gaussian", MEASUREMENTS)
    n_measurements: int = integer(4, 1)
    back_gain: float = real(10.0, 0.0, low_open=True)
    model_state: str = choice("init", ("init", "trained"))
    eta_psnr: float = real(30.0)
    eta_ssim: float = real(0.5, -1.0, 1.0)

    def check(self) -> None:
        if self.measurement == "mean" and self.n_measurements != 1:
            raise ValueError("n_measurements must be 1 with measurement=mean (one vector)")
        if self.n_bins < 2 * self.n_measurements:
            raise ValueError(f"n_bins={self.n_bins} is too small; use at least 2 bins per measurement ({2 * self.n_measurements})")


class ImprintBlock(nn.Module):
    """x ↦ x + (back · ReLU(bins · x)): the imprint layer and its linear map back to the image.

    ``bins``: weight rows γ·v, biases −γ·c (γ a small gain, so the ReLU outputs and the change to
    the image stay small); ``back``: every column equal to w·r (r a fixed ±1 pixel pattern, w the
    back gain), bias −w·γ·μ·r, which centres the change on public images (μ: their mean of
    Σ_i (⟨v, x⟩ − c_i)⁺). Every bin thus receives the same loss gradient w·⟨r, ∂ℓ/∂out⟩.
    """

    def __init__(self, weights: torch.Tensor, biases: torch.Tensor, pattern: torch.Tensor, centre: float):
        super().__init__()
        n_bins, size = weights.shape
        self.bins = nn.Linear(size, n_bins)
        self.back = nn.Linear(n_bins, size)
        with torch.no_grad():
            self.bins.weight.copy_(weights)
            self.bins.bias.copy_(biases)
            self.back.weight.copy_(pattern.unsqueeze(1).expand(size, n_bins))
            self.back.bias.copy_(-centre * pattern)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.back(F.relu(self.bins(x.flatten(1)))).view_as(x)


def _measurement_vectors(kind: str, n_measurements: int, size: int, generator: torch.Generator) -> torch.Tensor:
    if kind == "mean":
        return torch.full((1, size), 1.0 / size, dtype=torch.float64)
    directions = torch.randn((n_measurements, size), generator=generator, dtype=torch.float64)
    return directions / directions.norm(dim=1, keepdim=True)


def _cutoffs(measured: np.ndarray, vector: np.ndarray, n_bins: int) -> np.ndarray:
    """k increasing cut-offs: the minimum of ⟨v, x⟩ over [0, 1]^d, then public quantiles i/k."""
    lowest = np.minimum(vector, 0.0).sum() - 1e-6
    quantiles = np.quantile(measured, np.arange(1, n_bins) / n_bins)
    cutoffs = np.concatenate([[lowest], quantiles])
    return np.maximum.accumulate(cutoffs)


class ImprintAttack:
    """Build the malicious model and read images out of the client's update to it.

    ``image_shape`` (C, H, W), or (C, D, H, W) for volumes; ``n_bins`` k, the total number of bins (split evenly over the
    measurements; each non-empty bin yields one candidate image); ``public_images`` (N, C, H, W) or (N, H, W)
    in [0, 1], the server's public data from which the cut-offs are set (quantiles of the
    measurement) and the change to the image is calibrated; ``measurement``: "mean" (v = 1/d, one
    measurement, as in Fowl et al.) or "gaussian" (random unit directions drawn from ``seed``);
    ``n_measurements``: independent measurements ("gaussian" only); ``back_gain`` w: weight of
    the back map, the strength of the bins' gradient; ``perturbation``: per-pixel standard
    deviation of the block's change to public images (it sets the gain γ).

    Defaults: 128 bins as 4 Gaussian measurements of 32 bins recover ≈ 97 % of the images of
    batches of 16 PneumoniaMNIST images exactly without DP (20 batches; one "mean" measurement
    with 128 bins ≈ 96 %, with 256 bins ≈ 97 %; 64 bins as 4 Gaussian measurements ≈ 89 %).
    A back gain of 10 makes the bins' gradient dominate each sample's gradient norm for the
    benchmark's CNN, so clipping leaves the imprint most of C.
    """

    def __init__(
        self,
        image_shape: tuple[int, ...],
        n_bins: int,
        public_images,
        *,
        measurement: str = "gaussian",
        n_measurements: int = 4,
        back_gain: float = 10.0,
        perturbation: float = 1e-3,
        seed: int = 0,
    ):
        self.image_shape = tuple(int(s) for s in image_shape)
        if len(self.image_shape) not in (3, 4) or min(self.image_shape) < 1:
            raise ValueError(f"image_shape={image_shape} is not valid; expected (C, H, W), or (C, D, H, W) for volumes")
        if measurement not in MEASUREMENTS:
            raise ValueError(f"measurement={measurement!r} is not valid; choose one of {', '.join(MEASUREMENTS)}")
        if not (isinstance(n_measurements, int) and n_measurements >= 1):
            raise ValueError(f"n_measurements={n_measurements!r} is not valid; expected an integer ≥ 1")
        if measurement == "mean" and n_measurements != 1:
            raise ValueError(f"n_measurements={n_measurements} is not valid with measurement='mean' (one vector); use 1 or measurement='gaussian'")
        if not (isinstance(n_bins, int) and n_bins >= 2 * n_measurements):
            raise ValueError(f"n_bins={n_bins!r} is not valid; expected an integer ≥ {2 * n_measurements} (at least 2 bins per measurement)")
        for name, value in (("back_gain", back_gain), ("perturbation", perturbation)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} is not valid; expected a finite value > 0")
        public = as_image_batch(public_images, "public_images")
        if public.shape[1:] != self.image_shape:
            raise ValueError(f"public_images have shape {public.shape[1:]} per image; expected {self.image_shape}")
        if len(public) < 2:
            raise ValueError(f"public_images holds {len(public)} image; the cut-offs need at least 2 (better: hundreds)")

        self.n_bins = n_bins
        self.measurement = measurement
        self.n_measurements = n_measurements
        self.back_gain = back_gain
        self.perturbation = perturbation
        generator = torch.Generator().manual_seed(seed)
        size = int(np.prod(self.image_shape))
        vectors = _measurement_vectors(measurement, n_measurements, size, generator).numpy()
        measured = public.reshape(len(public), -1) @ vectors.T  # (N, m)
        weights = np.zeros((n_bins, size))
        cutoffs = np.zeros(n_bins)
        self.groups: list[np.ndarray] = []  # bin indices of each measurement, cut-offs increasing
        for g, rows in enumerate(np.array_split(np.arange(n_bins), len(vectors))):
            weights[rows] = vectors[g]
            cutoffs[rows] = _cutoffs(measured[:, g], vectors[g], len(rows))
            self.groups.append(rows)
        # Σ_i (⟨v_i, x⟩ − c_i)⁺ on public images: its spread calibrates γ, its mean centres the change.
        activity = np.maximum(public.reshape(len(public), -1) @ weights.T - cutoffs, 0.0).sum(1)
        spread = max(float(activity.std()), 1e-12)
        self.gain = perturbation / (back_gain * spread)
        self.weights = torch.tensor(weights, dtype=torch.float32)
        self.cutoffs = torch.tensor(cutoffs, dtype=torch.float32)
        self._centre = self.gain * float(activity.mean())  # in units of Σ_i u_i
        signs = torch.randint(0, 2, (size,), generator=generator).double() * 2 - 1
        self._pattern = (back_gain * signs).float()

    # ----------------------------------------------------------------------------------------
    def imprint_block(self) -> ImprintBlock:
        return ImprintBlock(self.gain * self.weights, -self.gain * self.cutoffs, self._pattern, self._centre)

    def malicious_model(self, base_model: nn.Module) -> nn.Module:
        """The model the server sends: imprint block, then the classifier (its parameters first)."""
        reference = next(base_model.parameters())
        block = self.imprint_block().to(device=reference.device, dtype=reference.dtype)
        return nn.Sequential(OrderedDict(imprint=block, classifier=base_model))

    def threat_model(self) -> dict:
        return {
            "attack": "imprint (Fowl et al. 2022)",
            "server": "malicious: sends a model with an imprint block prepended",
            "observes": "the client's DP-SGD update to that model",
            "n_bins": self.n_bins,
            "measurement": self.measurement,
            "n_measurements": self.n_measurements,
            "back_gain": self.back_gain,
            "perturbation": self.perturbation,
        }

    # ----------------------------------------------------------------------------------------
    def reconstruct(self, update: ClientUpdate) -> torch.Tensor:
        """Candidate images (n, C, H, W) in [0, 1], one per non-empty bin, from the update's first
        two tensors (the imprint weights and biases): x̂ = Δ∇W / Δ∇b between consecutive cut-offs.

        A bin no image fell into has Δ∇b = 0 exactly (possible only without noise) and yields no
        candidate; under DP noise every bin yields one (mostly noise), so n ≤ ``n_bins``. n can be
        below the batch size when images share bins in every measurement, or above it; scoring
        matches each true image to at most one candidate.
        """
        if tuple(update.image_shape) != self.image_shape:
            raise ValueError(f"the update is for images of shape {update.image_shape}; this attack was built for {self.image_shape}")
        weight_grad, bias_grad = (g.detach().double().cpu() for g in update.gradients[:2])
        if weight_grad.shape != self.weights.shape or bias_grad.shape != (self.n_bins,):
            raise ValueError(
                f"the update's first tensors have shapes {tuple(weight_grad.shape)} and {tuple(bias_grad.shape)}; "
                f"expected the imprint block's {tuple(self.weights.shape)} and ({self.n_bins},): was it computed on malicious_model()?"
            )
        candidates, filled = [], []
        for rows in self.groups:
            rows = torch.as_tensor(rows)
            next_weight = torch.cat([weight_grad[rows[1:]], torch.zeros_like(weight_grad[rows[:1]])])
            next_bias = torch.cat([bias_grad[rows[1:]], torch.zeros(1, dtype=bias_grad.dtype)])
            delta_weight = weight_grad[rows] - next_weight
            delta_bias = bias_grad[rows] - next_bias
            nonzero = delta_bias != 0
            candidates.append(delta_weight / torch.where(nonzero, delta_bias, torch.ones_like(delta_bias)).unsqueeze(1))
            filled.append(nonzero)
        candidates = torch.cat(candidates)[torch.cat(filled)]
        candidates = torch.nan_to_num(candidates, nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)
        return candidates.float().view(len(candidates), *self.image_shape)


def imprint_client_update(
    attack: ImprintAttack,
    base_model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    generator: Optional[torch.Generator] = None,
    loss_fn: Callable = F.cross_entropy,
) -> tuple[nn.Module, ClientUpdate]:
    """The round: the server builds the malicious model, the client returns its DP-SGD update on it
    (its training loss ``loss_fn``: cross-entropy, or a segmenter's loss of masks ``labels``)."""
    malicious = attack.malicious_model(base_model)
    update = simulate_client_update(
        malicious, images, labels, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm, generator=generator,
        loss_fn=loss_fn,
    )
    return malicious, update


__all__ = ["ImprintAttack", "ImprintBlock", "MEASUREMENTS", "imprint_client_update"]
