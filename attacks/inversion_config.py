"""The settings of a gradient inversion, and the published recipes as presets.

:class:`InversionConfig` holds the optimisation (distance, optimiser, step, schedule, box, prior
weight, restarts, start) with this benchmark's tuned defaults; :class:`GradientInversionConfig`
adds what the benchmark's run of the attack needs (how many images, in updates of what size, at
which model state, with given or recovered labels, and the success thresholds). The presets
:data:`GEIPING_2020` and :data:`DLG_2019` are the papers' own settings, :data:`FAST` a light one
for tests. Every field acts or is rejected (:meth:`InversionConfig.check`); the choices are keys
of the tables in :mod:`medprivbench.attacks.inversion_parts`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .inversion_parts import DETERMINISTIC_INITS, GRADIENT_DISTANCES, INITS
from .settings import Validated, choice, flag, integer, real

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
