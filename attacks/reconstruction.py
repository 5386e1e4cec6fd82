"""Reconstructing a client's training images from its DP-SGD update.

Threat model (DESIGN.md, "gradient inversion"). An honest-but-curious server knows the model's
architecture and its weights θ at the step (passed to every attack as an ``nn.Module``) and
observes one client's update for a batch of B images — nothing else:

    ḡ = ( Σ_n clip_C(∇θ ℓ(x_n, y_n)) + N(0, σ²C² I) ) / B,       clip_C(g) = g · min(1, C / ‖g‖₂),

the gradient of one DP-SGD step (Abadi et al., "Deep learning with differential privacy", CCS
2016) with ℓ the cross-entropy loss, C the per-sample clipping norm (``max_grad_norm``; ∞: no
clipping) and σ the noise multiplier (0: no noise). B, the image shape, σ and C are public in
DP-SGD, so :class:`ClientUpdate` carries them; the labels are optional (given, or inferred from the
update by :func:`recover_labels`). The true images stay with the client: they enter only
:func:`dp_sgd_update` / :func:`simulate_client_update` (the client's side) and the scoring code in
``image_metrics.py``.

Attacks here:

* :func:`recover_labels` — iDLG (Zhao, Mopuri & Bilen 2020) for B = 1; the count estimate of Geng
  et al. 2021 ("Towards general deep leakage in federated learning", arXiv 2110.09074) for B > 1.
* :func:`invert_gradients` — optimisation-based gradient inversion: find images x̂ whose gradient
  matches ḡ. With the defaults of Geiping, Bauermeister, Dröge & Moeller, "Inverting gradients —
  how easy is it to break privacy in federated learning?", NeurIPS 2020 (cosine distance + total
  variation, Adam on the signed gradient, box constraint, step decay, restarts scored by the
  matching loss), or of Zhu, Liu & Han, "Deep leakage from gradients", NeurIPS 2019 (squared
  Euclidean distance, L-BFGS) via :data:`DLG_2019`. Options are table entries keyed by name
  (:data:`GRADIENT_DISTANCES`, :data:`INITS`), so a new one does not touch the attack loop.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from .settings import Validated, choice, flag, integer, real

Progress = Callable[[int, int, float], None]  # (iteration done, total iterations, current mean loss)

GRAD_METHODS = ("vmap", "loop")


# --------------------------------------------------------------------------------------------
# The client's side: per-sample gradients and the DP-SGD update
# --------------------------------------------------------------------------------------------
def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of every parameter that requires grad, in ``named_parameters`` order.

    This order is the order of the tensors in an update.
    """
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def _batch_loss_fn(model: nn.Module, names: Sequence[str]):
    """ℓ(θ; x, y) = mean cross-entropy of the batch, as a function of the trainable tensors θ."""
    frozen = {name: p.detach() for name, p in model.named_parameters() if not p.requires_grad}
    buffers = dict(model.named_buffers())

    def loss(param_values: tuple[torch.Tensor, ...], images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        params = {**dict(zip(names, param_values)), **frozen}
        return F.cross_entropy(functional_call(model, (params, buffers), (images,)), labels)

    return loss


def per_sample_gradients(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, method: str = "vmap") -> list[torch.Tensor]:
    """∇θ ℓ(x_n, y_n) for every sample n: one tensor (B, *shape) per trainable parameter.

    ``method="vmap"`` vectorises ``torch.func.grad`` over the batch; ``"loop"`` runs one backward
    pass per sample (slow; for modules that ``torch.func`` cannot transform).
    """
    if method not in GRAD_METHODS:
        raise ValueError(f"method={method!r} is not valid; choose one of {', '.join(GRAD_METHODS)}")
    named = trainable_parameters(model)
    if method == "vmap":
        names = [name for name, _ in named]
        values = tuple(p.detach() for _, p in named)
        loss = _batch_loss_fn(model, names)

        def sample_loss(param_values, image, label):
            return loss(param_values, image.unsqueeze(0), label.unsqueeze(0))

        return list(vmap(grad(sample_loss), in_dims=(None, 0, 0))(values, images, labels))
    params = [p for _, p in named]
    rows = [torch.autograd.grad(F.cross_entropy(model(images[n : n + 1]), labels[n : n + 1]), params) for n in range(len(images))]
    return [torch.stack(column) for column in zip(*rows)]


def clip_factors(norms: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    """min(1, C / (‖g_n‖ + 1e-6)) per sample, as Opacus computes it; 1 when C = ∞."""
    if math.isinf(max_grad_norm):
        return torch.ones_like(norms)
    return (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)


def _flat_norms(per_sample: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in per_sample))


def _validate_dp_parameters(noise_multiplier: float, max_grad_norm: float) -> None:
    if not (math.isfinite(noise_multiplier) and noise_multiplier >= 0):
        raise ValueError(f"noise_multiplier={noise_multiplier!r} is not valid; expected a finite σ ≥ 0")
    if not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm={max_grad_norm!r} is not valid; expected C > 0 (math.inf: no clipping)")
    if noise_multiplier > 0 and math.isinf(max_grad_norm):
        raise ValueError(f"noise_multiplier={noise_multiplier} needs a finite max_grad_norm: the noise has standard deviation σ·C")


def _validate_batch(images: torch.Tensor, labels: torch.Tensor) -> None:
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images have shape {tuple(images.shape)} and dtype {images.dtype}; expected float (B, C, H, W)")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels have shape {tuple(labels.shape)}; expected ({images.shape[0]},), one class index per image")


def dp_sgd_update(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    generator: Optional[torch.Generator] = None,
    method: str = "vmap",
    chunk_size: int = 64,
) -> list[torch.Tensor]:
    """The gradient of one DP-SGD step for this batch (Abadi et al. 2016), one tensor per parameter.

    ḡ = (Σ_n g_n · min(1, C/(‖g_n‖ + 10⁻⁶)) + σ·C·z) / B with g_n = ∇θ ℓ(x_n, y_n) the per-sample
    gradient of the cross-entropy loss over all trainable parameters, z ~ N(0, I) per coordinate
    (drawn from ``generator``), C = ``max_grad_norm`` (math.inf: no clipping) and σ =
    ``noise_multiplier`` (0: no noise). With σ = 0 and C = ∞ this is the plain mean gradient.
    The batch size B is fixed here (Opacus divides by the *expected* batch size under Poisson
    sampling). Samples are processed ``chunk_size`` at a time to bound memory.
    """
    _validate_dp_parameters(noise_multiplier, max_grad_norm)
    _validate_batch(images, labels)
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"chunk_size={chunk_size!r} is not valid; expected an integer ≥ 1")
    params = [p for _, p in trainable_parameters(model)]
    total = [torch.zeros_like(p, dtype=p.dtype) for p in params]
    for start in range(0, len(images), chunk_size):
        per_sample = per_sample_gradients(model, images[start : start + chunk_size], labels[start : start + chunk_size], method=method)
        factors = clip_factors(_flat_norms(per_sample), max_grad_norm)
        for acc, g in zip(total, per_sample):
            acc += torch.einsum("n,n...->...", factors.to(g.dtype), g.detach())
    if noise_multiplier > 0:
        std = noise_multiplier * max_grad_norm
        for acc in total:
            device = generator.device if generator is not None else acc.device
            acc += std * torch.randn(acc.shape, generator=generator, device=device, dtype=acc.dtype).to(acc.device)
    return [acc / len(images) for acc in total]


# --------------------------------------------------------------------------------------------
# The attacker's view
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ClientUpdate:
    """Everything the server observes of one client's step — never the images.

    ``gradients``: the DP-SGD update ḡ, one tensor per trainable parameter of the model in
    ``named_parameters`` order; ``batch_size`` B; ``image_shape`` (C, H, W); the DP parameters
    σ (``noise_multiplier``) and C (``max_grad_norm``, math.inf: no clipping), public in DP-SGD;
    ``labels`` (B,) when the threat model grants them, else None (the attacker infers them).
    """

    gradients: tuple[torch.Tensor, ...]
    batch_size: int
    image_shape: tuple[int, int, int]
    noise_multiplier: float = 0.0
    max_grad_norm: float = math.inf
    labels: Optional[torch.Tensor] = None

    def __post_init__(self):
        object.__setattr__(self, "gradients", tuple(g.detach() for g in self.gradients))
        object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"batch_size={self.batch_size!r} is not valid; expected an integer ≥ 1")
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ValueError(f"image_shape={self.image_shape} is not valid; expected (C, H, W)")
        _validate_dp_parameters(self.noise_multiplier, self.max_grad_norm)
        if self.labels is not None:
            labels = torch.as_tensor(self.labels, dtype=torch.long).detach()
            if labels.shape != (self.batch_size,):
                raise ValueError(f"labels have shape {tuple(labels.shape)}; expected ({self.batch_size},) or None")
            object.__setattr__(self, "labels", labels)

    def threat_model(self) -> dict:
        """A JSON-friendly description of what the attacker sees, to print beside the results."""
        return {
            "observes": "one client's DP-SGD update (per-sample clipped, noised, averaged) and the model weights",
            "batch_size": self.batch_size,
            "image_shape": list(self.image_shape),
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.max_grad_norm,
            "labels": "given" if self.labels is not None else "inferred from the update",
        }


def simulate_client_update(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    reveal_labels: bool = False,
    generator: Optional[torch.Generator] = None,
    method: str = "vmap",
) -> ClientUpdate:
    """The client's side: compute :func:`dp_sgd_update` and package what the server sees."""
    gradients = dp_sgd_update(
        model, images, labels, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm, generator=generator, method=method
    )
    return ClientUpdate(
        gradients=tuple(gradients),
        batch_size=len(images),
        image_shape=tuple(images.shape[1:]),
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        labels=labels.detach().clone() if reveal_labels else None,
    )


def check_update_matches_model(model: nn.Module, update: ClientUpdate) -> None:
    """Raise a ValueError unless the update has one tensor of the right shape per trainable parameter."""
    named = trainable_parameters(model)
    if len(named) != len(update.gradients):
        raise ValueError(f"the update has {len(update.gradients)} tensors but the model has {len(named)} trainable parameters")
    for (name, p), g in zip(named, update.gradients):
        if g.shape != p.shape:
            raise ValueError(f"update tensor for {name!r} has shape {tuple(g.shape)}; the model's parameter has {tuple(p.shape)}")


# --------------------------------------------------------------------------------------------
# Label recovery from the classification head's gradient
# --------------------------------------------------------------------------------------------
def _classifier_head(model: nn.Module) -> tuple[nn.Linear, int, Optional[int]]:
    """The last nn.Linear and the positions of its weight and bias in the update."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not heads:
        raise ValueError("label recovery needs a final nn.Linear classification layer; the model has none (pass the labels instead)")
    head = heads[-1]
    position = {id(p): i for i, (_, p) in enumerate(trainable_parameters(model))}
    if id(head.weight) not in position:
        raise ValueError("label recovery needs the gradient of the last nn.Linear's weight, which is frozen in this model")
    bias_index = position.get(id(head.bias)) if head.bias is not None else None
    return head, position[id(head.weight)], bias_index


def _reference_batch(image_shape, n_dummy: int, reference_images: Optional[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """Public images when the attacker has them (up to ``n_dummy``, drawn at random), else U[0, 1] noise."""
    if reference_images is None:
        return torch.rand((n_dummy, *image_shape), generator=generator)
    reference_images = torch.as_tensor(reference_images, dtype=torch.float32)
    if reference_images.ndim == 3:
        reference_images = reference_images.unsqueeze(1)
    if tuple(reference_images.shape[1:]) != tuple(image_shape):
        raise ValueError(f"reference_images have shape {tuple(reference_images.shape[1:])} per image; expected {tuple(image_shape)}")
    chosen = torch.randperm(len(reference_images), generator=generator)[:n_dummy]
    return reference_images[chosen]


def _dummy_statistics(model: nn.Module, head: nn.Linear, dummy: torch.Tensor):
    """Mean softmax output p̄ and mean head input h̄ of the model on the reference images."""
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].detach()))
    try:
        with torch.no_grad():
            probabilities = F.softmax(model(dummy), dim=1)
    finally:
        hook.remove()
    return probabilities.mean(0), captured[0].flatten(1).mean(0)


def _mean_clip_factor(model: nn.Module, dummy: torch.Tensor, n_classes: int, max_grad_norm: float, generator: torch.Generator) -> float:
    """E[min(1, C/‖g‖)] over dummy inputs with random labels: how much clipping shrinks a sample."""
    if math.isinf(max_grad_norm):
        return 1.0
    labels = torch.randint(n_classes, (len(dummy),), generator=generator).to(dummy.device)
    factors = []
    for start in range(0, len(dummy), 16):
        per_sample = per_sample_gradients(model, dummy[start : start + 16], labels[start : start + 16])
        factors.append(clip_factors(_flat_norms(per_sample), max_grad_norm))
    return float(torch.cat(factors).mean())


def _round_counts(counts: torch.Tensor, total: int) -> torch.Tensor:
    """Non-negative integers summing to ``total`` closest to ``counts`` (largest remainders)."""
    counts = counts.clamp(min=0)
    counts = counts * (total / counts.sum()) if counts.sum() > 0 else torch.full_like(counts, total / len(counts))
    whole = counts.floor()
    missing = total - int(whole.sum())
    order = torch.argsort(counts - whole, descending=True)
    whole[order[:missing]] += 1
    return whole.long()


def recover_labels(
    model: nn.Module,
    update: ClientUpdate,
    *,
    reference_images: Optional[torch.Tensor] = None,
    n_dummy: int = 64,
    seed: int = 0,
) -> torch.Tensor:
    """Infer the batch's labels (B,) from the classification head's gradient.

    For cross-entropy with softmax, ∂ℓ/∂z_j = p_j − y_j, so the head's gradients are
    ∇b_j = (1/B) Σ_n c_n (p_nj − y_nj) and ∇W_j = (1/B) Σ_n c_n (p_nj − y_nj) h_n, with h_n the
    head's input and c_n the clipping factor of sample n.

    * B = 1, iDLG (Zhao et al. 2020): the true class is the only j with p_j − y_j < 0, so
      ŷ = argmin_j ∇b_j; without a bias, argmin_j ⟨∇W_j, h̄⟩ with h̄ the mean head input of the
      reference images below (this needs ⟨h, h̄⟩ > 0 for the true image's features h, which
      holds for non-negative, e.g. ReLU, features).
    * B > 1, Geng et al. 2021: n_j ≈ B·p̄_j − B·∇b_j / c̄ per class, where p̄ is the model's mean
      softmax output on ``n_dummy`` reference images (standing in for the unknown p_n) and
      c̄ the mean clipping factor min(1, C/‖g‖) of those images' per-sample gradients (1 without
      clipping). Without a bias, ∇b_j is replaced by ⟨∇W_j, h̄⟩/‖h̄‖² with h̄ the mean head input
      of the reference images. The counts are rounded to integers summing to B (largest remainders).
      Exact in expectation for an untrained model without clipping; DP noise of std σC/B on
      every coordinate makes the estimate as noisy as it should.

    The reference images are public images of the same kind (N, C, H, W) in [0, 1] when the
    attacker has them (``reference_images``, e.g. another split or a public dataset: the
    estimate of p̄ and c̄ is much better on real images), else uniform noise.
    Returns the recovered labels sorted ascending (the order of a batch carries no information).
    """
    check_update_matches_model(model, update)
    head, weight_index, bias_index = _classifier_head(model)
    if not (isinstance(n_dummy, int) and n_dummy >= 1):
        raise ValueError(f"n_dummy={n_dummy!r} is not valid; expected an integer ≥ 1")
    generator = torch.Generator().manual_seed(seed)
    reference = next(model.parameters())
    dummy = _reference_batch(update.image_shape, n_dummy, reference_images, generator).to(device=reference.device, dtype=reference.dtype)
    mean_probability, mean_feature = _dummy_statistics(model, head, dummy)
    weight_grad = update.gradients[weight_index].to(mean_feature.dtype)
    if bias_index is not None:
        signal = update.gradients[bias_index].to(mean_feature.dtype)
    else:
        signal = weight_grad @ mean_feature / mean_feature.pow(2).sum().clamp(min=1e-12)
    if update.batch_size == 1:
        return signal.argmin().reshape(1).cpu()
    clip = _mean_clip_factor(model, dummy, head.out_features, update.max_grad_norm, generator)
    counts = update.batch_size * (mean_probability - signal / clip)
    rounded = _round_counts(counts.cpu().double(), update.batch_size)
    return torch.repeat_interleave(torch.arange(len(rounded)), rounded)


def _labels_for(model: nn.Module, update: ClientUpdate, seed: int, reference_images: Optional[torch.Tensor]) -> torch.Tensor:
    if update.labels is not None:
        return update.labels
    return recover_labels(model, update, reference_images=reference_images, seed=seed)


# --------------------------------------------------------------------------------------------
# Gradient inversion: the parts (distances, prior, initialisation) and the configuration
# --------------------------------------------------------------------------------------------
def _per_trial_dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum((x * y).flatten(1).sum(1) for x, y in zip(a, b))


def cosine_distance(trial: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    """1 − cos(g, ḡ) over all parameters jointly, per trial (Geiping et al. 2020, eq. 4).

    Evaluated as ½‖g/‖g‖ − ḡ/‖ḡ‖‖², which equals 1 − cos but keeps its precision near a match:
    1 − cos computed directly is lost below float32's resolution (≈ 6·10⁻⁸).
    """
    trial_norm = _per_trial_dot(trial, trial).sqrt().clamp(min=1e-30)
    target_norm = _per_trial_dot(target, target).sqrt().clamp(min=1e-30)
    shape = lambda g, n: n.view(-1, *([1] * (g.ndim - 1)))  # noqa: E731
    return 0.5 * sum((g / shape(g, trial_norm) - t / shape(t, target_norm)).pow(2).flatten(1).sum(1) for g, t in zip(trial, target))


def l2_distance(trial: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    """‖g − ḡ‖² / ‖ḡ‖² per trial: DLG's squared Euclidean distance (Zhu et al. 2019), divided by
    the constant ‖ḡ‖² so that its scale (and L-BFGS' tolerances) do not depend on the model."""
    difference = [g - t for g, t in zip(trial, target)]
    return _per_trial_dot(difference, difference) / _per_trial_dot(target, target).clamp(min=1e-30)


GRADIENT_DISTANCES: dict[str, Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], torch.Tensor]] = {
    "cosine": cosine_distance,
    "l2": l2_distance,
}


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per trial: mean |Δx| + mean |Δy| over a (T, B, C, H, W) batch
    (the TV prior of Geiping et al. 2020, as in their code)."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(1)
    return dx + dy


def _init_randn(shape, generator):
    """N(0.5, 0.25²): Geiping et al.'s standard-normal start in normalised space (pixel std ≈ 0.25)."""
    return 0.5 + 0.25 * torch.randn(shape, generator=generator)


INITS: dict[str, Callable[[tuple, torch.Generator], torch.Tensor]] = {
    "randn": _init_randn,
    "rand": lambda shape, generator: torch.rand(shape, generator=generator),
    "half": lambda shape, generator: torch.full(shape, 0.5),
}
DETERMINISTIC_INITS = frozenset({"half"})
OPTIMIZERS = ("adam", "lbfgs")
LR_DECAY_FRACTIONS = (3 / 8, 5 / 8, 7 / 8)  # Geiping et al.: lr × 0.1 at these fractions of the run


@dataclass
class InversionConfig(Validated):
    """Settings of an optimisation-based gradient inversion; every field acts or is rejected.

    The defaults are this benchmark's tuned Geiping et al. recipe (cosine + TV, signed Adam, box,
    step decay) for small grayscale images in [0, 1]: lr 0.01 and TV weight 10⁻³ were best on
    PneumoniaMNIST with the default CNN (TV 5·10⁻⁴ … 2·10⁻³ and lr 0.01 … 0.1 within ±0.5 dB),
    and 3000 iterations keep 16 single-image attacks within two minutes on one CPU thread.
    :data:`GEIPING_2020` has the paper's settings, :data:`DLG_2019` Zhu et al.'s, :data:`FAST` a
    light setting for tests.

    Measured (16 PneumoniaMNIST training images, one B = 1 update each, default CNN at
    initialisation, no DP, labels recovered): mean PSNR 29.1 dB, SSIM 0.90, 115 s for all 16
    (≈ 420 single-trial iterations/s). Beyond ≈ 29 dB the attack stalls on this CNN: its
    max-pooling routes the backward pass through the argmax, so the gradient — and the matching
    loss — jumps where the argmax switches; L-BFGS refinement stops after a few steps, and
    6000 iterations, lr 0.03 or the paper's lr 0.1 with TV 10⁻⁴, other TV weights and restarts
    change the mean by < 1 dB. With average pooling instead, the same recipe without TV reaches
    ≈ 34 dB. Under DP (C = 1) σ = 0.01 already drives the PSNR below a blank image.

    * ``loss``: gradient distance, a key of :data:`GRADIENT_DISTANCES` ("cosine" | "l2").
    * ``optimizer``: "adam" (all trials advance together, vectorised with ``torch.vmap``) or
      "lbfgs" (``torch.optim.LBFGS`` without line search, as DLG; one trial at a time, since its
      curvature memory would couple trials). ``iterations`` counts optimiser iterations (one
      gradient-matching evaluation each).
    * ``lr``: step size; ``signed``: Adam on sign(∇x̂) (Adam only); ``lr_decay``: multiply lr by
      0.1 at 3/8, 5/8 and 7/8 of the iterations; ``boxed``: project x̂ onto [0, 1] after each step.
    * ``tv_weight``: weight α of the total-variation prior (0: none).
    * ``restarts``: independent trials per update; the one with the lowest final gradient
      distance (without the prior) is returned. Needs a random ``init`` when > 1.
    * ``init``: key of :data:`INITS` ("randn": N(0.5, 0.25²), "rand": U[0, 1], "half": 0.5).
    """

    loss: str = choice("cosine", GRADIENT_DISTANCES, doc="gradient distance")
    optimizer: str = choice("adam", OPTIMIZERS)
    iterations: int = integer(3000, 1)
    lr: float = real(0.01, 0.0, low_open=True)
    signed: bool = flag(True)
    lr_decay: bool = flag(True)
    boxed: bool = flag(True)
    tv_weight: float = real(1e-3, 0.0)
    restarts: int = integer(1, 1)
    init: str = choice("randn", INITS)

    def check(self) -> None:
        if self.signed and self.optimizer != "adam":
            raise ValueError(f"signed=True is not valid with optimizer={self.optimizer!r}; signed steps are an Adam option (set signed=False)")
        if self.restarts > 1 and self.init in DETERMINISTIC_INITS:
            raise ValueError(f"restarts={self.restarts} with init={self.init!r} repeats one identical trial; use a random init (randn, rand)")


@dataclass
class GradientInversionConfig(InversionConfig):
    """Gradient inversion of client updates as the benchmark runs it (Geiping et al. 2020; DLG,
    Zhu et al. 2019, is the same attack with :data:`DLG_2019`'s optimiser settings).

    The attacker sees the DP-SGD update of ``batch_size`` training images at the run's σ and C
    (per-sample clipping, noise σ·C, averaged), at the model's initial or trained weights, and
    optimises dummy images whose gradient matches it (the :class:`InversionConfig` settings).
    ``n_images`` are attacked in all (``n_images / batch_size`` updates). An image counts as
    reconstructed (ReRo@η) at PSNR ≥ ``eta_psnr`` dB, or, reported separately, SSIM ≥ ``eta_ssim``.
    """

    n_images: int = integer(16, 1, doc="images attacked in total")
    batch_size: int = integer(1, 1, doc="images per client update")
    model_state: str = choice("init", ("init", "trained"))
    labels: str = choice("known", ("known", "recovered"), doc="known (granted) or recovered from the last layer")
    eta_psnr: float = real(20.0)
    eta_ssim: float = real(0.5, -1.0, 1.0)

    def check(self) -> None:
        super().check()
        if self.n_images % self.batch_size:
            raise ValueError(f"n_images={self.n_images} is not a multiple of batch_size={self.batch_size}")


# Geiping et al. 2020, as in their reference script (inversefed, reconstruct_image.py): cosine
# distance, TV weight 1e-4, signed Adam with step 0.1, 24,000 iterations, step decay, box, randn
# start, one trial. Their step and TV act on mean/std-normalised images (std ≈ 0.25), here on
# [0, 1] pixels, where the same numbers mean a ~4× larger step. Measured on 4 PneumoniaMNIST
# images with the default CNN: 28.5 dB mean PSNR (the defaults: 27.6 dB) in 8 minutes.
GEIPING_2020 = InversionConfig(
    loss="cosine", optimizer="adam", iterations=24_000, lr=0.1, signed=True,
    lr_decay=True, boxed=True, tv_weight=1e-4, restarts=1, init="randn",
)

# Zhu et al. 2019: squared Euclidean distance, L-BFGS with lr 1 and no line search, randn start,
# no prior, no box. Their code calls LBFGS.step 300 times with up to 20 iterations each.
# Measured on the same 4 images: 24.7 dB mean PSNR in 6 minutes.
DLG_2019 = InversionConfig(
    loss="l2", optimizer="lbfgs", iterations=300 * 20, lr=1.0, signed=False,
    lr_decay=False, boxed=False, tv_weight=0.0, restarts=1, init="randn",
)

# A light setting for tests and smoke runs.
FAST = InversionConfig(iterations=400)


@dataclass
class InversionResult:
    """Output of :func:`run_gradient_inversion` for U updates.

    ``images`` (U, B, C, H, W): the best trial per update, clipped to the pixel range [0, 1]
    (known to the attacker; ``boxed`` also projects after every step); ``matching_loss`` (U,): its final
    gradient distance; ``labels`` (U, B): the labels used (given or recovered); ``iterations``
    per trial, ``n_trials`` = U · restarts and ``seconds`` of optimisation wall time.
    """

    images: torch.Tensor
    matching_loss: torch.Tensor
    labels: torch.Tensor
    iterations: int
    n_trials: int
    seconds: float
    config: InversionConfig = field(default_factory=InversionConfig)

    @property
    def iterations_per_second(self) -> float:
        """Optimiser iterations per second (all trials of an Adam run advance in one iteration)."""
        steps = self.iterations if self.config.optimizer == "adam" else self.iterations * self.n_trials
        return steps / self.seconds if self.seconds > 0 else math.inf

    @property
    def trial_iterations_per_second(self) -> float:
        """Single-trial iterations per second: what one-image-at-a-time attacks would need to match."""
        return self.iterations * self.n_trials / self.seconds if self.seconds > 0 else math.inf

    def summary(self) -> dict:
        return {
            "config": asdict(self.config),
            "matching_loss": [float(v) for v in self.matching_loss],
            "iterations": self.iterations,
            "n_trials": self.n_trials,
            "seconds": self.seconds,
            "iterations_per_second": self.iterations_per_second,
            "trial_iterations_per_second": self.trial_iterations_per_second,
        }


# --------------------------------------------------------------------------------------------
# Gradient inversion: the attack loop
# --------------------------------------------------------------------------------------------
class _Objective:
    """Gradient distance (+ α·TV) of T trials, each a dummy batch (B, C, H, W) with its own target.

    The dummy gradients are vectorised over trials with ``vmap(grad(·))`` and stay differentiable
    with respect to the dummy images (the double backward of gradient inversion).
    """

    def __init__(self, model: nn.Module, targets: list[torch.Tensor], labels: torch.Tensor, config: InversionConfig):
        named = trainable_parameters(model)
        self.params = tuple(p.detach() for _, p in named)
        self.trial_gradients = vmap(grad(_batch_loss_fn(model, [name for name, _ in named])), in_dims=(None, 0, 0))
        self.targets = targets  # per parameter: (T, *shape)
        self.labels = labels  # (T, B)
        self.distance = GRADIENT_DISTANCES[config.loss]
        self.tv_weight = config.tv_weight

    def subset(self, index: slice) -> "_Objective":
        sub = object.__new__(_Objective)
        sub.__dict__.update(self.__dict__)
        sub.targets = [t[index] for t in self.targets]
        sub.labels = self.labels[index]
        return sub

    def matching(self, dummy: torch.Tensor) -> torch.Tensor:
        return self.distance(self.trial_gradients(self.params, dummy, self.labels), self.targets)

    def __call__(self, dummy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(total loss per trial, gradient distance per trial)."""
        matching = self.matching(dummy)
        if self.tv_weight == 0:
            return matching, matching
        return matching + self.tv_weight * total_variation(dummy), matching


def _milestones(iterations: int) -> list[int]:
    return [max(1, int(iterations * f)) for f in LR_DECAY_FRACTIONS]


def _schedule(optimizer: torch.optim.Optimizer, config: InversionConfig):
    gamma = 0.1 if config.lr_decay else 1.0
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=_milestones(config.iterations), gamma=gamma)


def _run_adam(dummy: torch.Tensor, objective: _Objective, config: InversionConfig, progress: Optional[Progress]) -> None:
    """All trials in one Adam: its update is elementwise, so this equals independent runs."""
    optimizer = torch.optim.Adam([dummy], lr=config.lr)
    scheduler = _schedule(optimizer, config)
    for iteration in range(config.iterations):
        optimizer.zero_grad(set_to_none=True)
        total, _ = objective(dummy)
        total.sum().backward()
        if config.signed:
            dummy.grad.sign_()
        optimizer.step()
        scheduler.step()
        if config.boxed:
            with torch.no_grad():
                dummy.clamp_(0.0, 1.0)
        if progress is not None:
            progress(iteration + 1, config.iterations, float(total.detach().mean()))


def _run_lbfgs(dummy: torch.Tensor, objective: _Objective, config: InversionConfig, progress: Optional[Progress]) -> None:
    """One L-BFGS per trial (lr, no line search, as DLG); a trial that diverges keeps its last finite iterate."""
    n_trials = dummy.shape[0]
    for trial in range(n_trials):
        image = dummy[trial : trial + 1].detach().clone().requires_grad_(True)
        trial_objective = objective.subset(slice(trial, trial + 1))
        optimizer = torch.optim.LBFGS([image], lr=config.lr, max_iter=1, history_size=100)
        scheduler = _schedule(optimizer, config)
        last_loss = math.inf

        def closure():
            optimizer.zero_grad(set_to_none=True)
            total, _ = trial_objective(image)
            total.sum().backward()
            return total.sum().detach()

        for iteration in range(config.iterations):
            previous = image.detach().clone()
            last_loss = float(optimizer.step(closure))
            scheduler.step()
            if not (math.isfinite(last_loss) and torch.isfinite(image).all()):
                with torch.no_grad():
                    image.copy_(previous)
                break
            if config.boxed:
                with torch.no_grad():
                    image.clamp_(0.0, 1.0)
            if progress is not None:
                progress(trial * config.iterations + iteration + 1, n_trials * config.iterations, last_loss)
        with torch.no_grad():
            dummy[trial : trial + 1] = image.detach()


def _stack_targets(updates: Sequence[ClientUpdate], restarts: int, reference: torch.Tensor) -> list[torch.Tensor]:
    """Per parameter, the targets of all trials (U · restarts, *shape); trials of one update adjacent."""
    targets = []
    for tensors in zip(*(u.gradients for u in updates)):
        stacked = torch.stack([t.to(device=reference.device, dtype=reference.dtype) for t in tensors])
        targets.append(stacked.repeat_interleave(restarts, dim=0))
    return targets


def _validate_updates(model: nn.Module, updates: Sequence[ClientUpdate]) -> None:
    if not updates:
        raise ValueError("updates is empty; pass at least one ClientUpdate")
    first = updates[0]
    for update in updates:
        if (update.batch_size, update.image_shape) != (first.batch_size, first.image_shape):
            raise ValueError(
                f"updates mix batch size/image shape {update.batch_size}/{update.image_shape} with {first.batch_size}/{first.image_shape}; "
                "invert updates of different shapes in separate calls"
            )
        check_update_matches_model(model, update)


def run_gradient_inversion(
    model: nn.Module,
    updates: Sequence[ClientUpdate],
    config: InversionConfig = InversionConfig(),
    *,
    seed: int = 0,
    progress: Optional[Progress] = None,
    reference_images: Optional[torch.Tensor] = None,
) -> InversionResult:
    """Invert U client updates (same B and image shape) with ``config.restarts`` trials each.

    Solves  x̂ = argmin_{x ∈ [0,1]^{B×C×H×W}}  d(∇θ ℓ(x, ŷ), ḡ) + α·TV(x)  per trial, with d the
    configured gradient distance, ŷ the given or recovered labels and ∇θ ℓ the gradient of the
    batch-mean cross-entropy at the model's current weights. With Adam all U · restarts trials
    are optimised at once (vectorised), which is several times faster on CPU than one at a time
    and gives the same result. Labels missing from an update are recovered with
    :func:`recover_labels` (on ``reference_images`` when given). The model is not modified.
    """
    _validate_updates(model, updates)
    reference = next(model.parameters())
    restarts = config.restarts
    labels = torch.stack([_labels_for(model, u, seed, reference_images).to(reference.device) for u in updates])  # (U, B)
    trial_labels = labels.repeat_interleave(restarts, dim=0)
    objective = _Objective(model, _stack_targets(updates, restarts, reference), trial_labels, config)

    shape = (len(updates) * restarts, updates[0].batch_size, *updates[0].image_shape)
    dummy = INITS[config.init](shape, torch.Generator().manual_seed(seed)).to(device=reference.device, dtype=reference.dtype)
    if config.boxed:
        dummy = dummy.clamp(0.0, 1.0)
    dummy.requires_grad_(True)

    start = time.perf_counter()
    (_run_adam if config.optimizer == "adam" else _run_lbfgs)(dummy, objective, config, progress)
    seconds = time.perf_counter() - start

    with torch.no_grad():
        final = objective.matching(dummy.detach()).view(len(updates), restarts)
    final = torch.where(torch.isfinite(final), final, torch.full_like(final, math.inf))
    best = final.argmin(dim=1)
    images = dummy.detach().view(len(updates), restarts, *shape[1:])[torch.arange(len(updates)), best]
    return InversionResult(
        images=images.clamp(0.0, 1.0),
        matching_loss=final[torch.arange(len(updates)), best].cpu(),
        labels=labels.cpu(),
        iterations=config.iterations,
        n_trials=shape[0],
        seconds=seconds,
        config=config,
    )


def invert_gradients(
    model: nn.Module,
    update: ClientUpdate,
    config: InversionConfig = InversionConfig(),
    *,
    seed: int = 0,
    progress: Optional[Progress] = None,
    reference_images: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Reconstruct the batch (B, C, H, W) behind one client update (see :func:`run_gradient_inversion`)."""
    return run_gradient_inversion(model, [update], config, seed=seed, progress=progress, reference_images=reference_images).images[0]


__all__ = [
    "ClientUpdate",
    "DLG_2019",
    "FAST",
    "GEIPING_2020",
    "GRADIENT_DISTANCES",
    "INITS",
    "InversionConfig",
    "GradientInversionConfig",
    "InversionResult",
    "check_update_matches_model",
    "clip_factors",
    "cosine_distance",
    "dp_sgd_update",
    "invert_gradients",
    "l2_distance",
    "per_sample_gradients",
    "recover_labels",
    "run_gradient_inversion",
    "simulate_client_update",
    "total_variation",
    "trainable_parameters",
]
