"""Structured configs: the typed schema behind ``configs/``.

Registered in Hydra's ConfigStore as ``base_config`` so that a misspelt key or a value of the
wrong type fails when the configuration is composed, before any data is read. The YAML files in
``configs/`` set the values; these classes give types and document units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class DatasetConfig:
    # "synthetic" (embedded, offline), "imagefolder" (your own images), or a 2D MedMNIST subset
    # such as "pneumoniamnist" read from <root>/<name>.npz.
    name: str = "synthetic"
    root: str = "${oc.env:MEDPRIVBENCH_DATA,'~/.medmnist'}"
    size: int = 28  # MedMNIST file resolution (28, 64, 128, 224); image side for imagefolder
    download: bool = False  # let the medmnist package fetch a missing file (needs network)
    # synthetic only: split sizes, label-noise rate and the generator seed
    n_train: int = 1000
    n_val: int = 500
    n_test: int = 1000
    label_noise: float = 0.03
    generator_seed: int = 0
    # imagefolder only
    channels: int = 1
    test_fraction: float = 0.2
    real_patient_data: bool = True
    # any dataset: keep at most this many training images (a stratified random subset), for quick runs
    max_train: Optional[int] = None


@dataclass
class ModelConfig:
    name: str = "cnn"  # cnn | resnet9 | resnet18 | densenet121
    width: int = 16  # channels of the first stage (cnn, resnet9: 64 in Ziller et al.)
    activation: str = "tanh"  # tanh | relu | elu | silu (cnn, resnet9)
    norm_groups: int = 4  # GroupNorm groups (BatchNorm is replaced: it mixes samples and breaks DP)
    weight_standardization: bool = False  # resnet9 only (Ziller et al. use it)
    # downsampling between stages: max | avg (cnn, resnet9, scatternet). Average pooling keeps
    # every pixel in the gradient (measured: gradient inversion gains nothing from it on this CNN).
    pool: str = "max"
    # per-sample gradient engine: auto (the fastest correct mode measured for this model),
    # hooks | ghost | functorch | ew
    grad_sample_mode: str = "auto"


@dataclass
class PrivacyConfig:
    # Target ε of the whole training run; .inf (command line: inf) trains without DP.
    epsilon: float = 8.0
    delta: float = 1e-5  # must be < 1/N_train
    max_grad_norm: float = 1.0  # per-sample clipping norm C
    accountant: str = "prv"  # prv | rdp (prv falls back to rdp where it cannot resolve a tiny σ)
    # Poisson sampling and noise from the operating system's CSPRNG instead of seeded streams: for
    # models that will be released (the guarantee assumes that randomness stays secret); not reproducible.
    secure_rng: bool = False


@dataclass
class NonPrivateOverrides:
    """Recipe changes for the ε = ∞ run (same model and data; no clipping, so it may want a smaller lr)."""

    optimizer: Optional[str] = None
    lr: Optional[float] = None
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    momentum: Optional[float] = None
    weight_decay: Optional[float] = None
    lr_schedule: Optional[str] = None
    ema_decay: Optional[float] = None
    augmult: Optional[int] = None
    augmentations: Optional[list] = None


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 256  # expected batch size; DP runs draw batches by Poisson sampling at q = B/N
    optimizer: str = "sgd"  # sgd | adam | nadam
    lr: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"  # constant | cosine
    # exponential moving average of the weights (e.g. 0.999); null: off. Post-processing: free under DP.
    ema_decay: Optional[float] = None
    # augmentation multiplicity (De et al. 2022): views per image, averaged before clipping; 0: off
    augmult: int = 0
    augmentations: list = field(default_factory=lambda: ["shift", "hflip"])  # shift | hflip
    nonprivate: NonPrivateOverrides = field(default_factory=NonPrivateOverrides)


@dataclass
class MembershipConfig:
    """The LiRA evaluation protocol shared by every membership attack (DESIGN.md).

    ``num_models`` models are trained with the target's exact DP recipe (same σ, q, T, C) on
    random halves of the training set, every image a member of exactly half of them; each model
    in turn is the target and the others are its shadow/reference models.
    """

    num_models: int = 8
    queries: list = field(default_factory=lambda: ["identity", "hflip"])  # views scored per image


@dataclass
class LossAttackConfig:
    """Loss threshold (Yeom et al. 2018): score = −loss of the target model."""


@dataclass
class LiRAAttackConfig:
    """LiRA (Carlini et al. 2022), online (IN and OUT shadows) and offline (OUT only)."""

    online: bool = True
    offline: bool = True
    # per_sample: a variance per image; fixed: one global variance (the paper's variant for few
    # shadows); auto: fixed below 64 shadow models
    variance: str = "auto"


@dataclass
class RMIAAttackConfig:
    """RMIA (Zarifzadeh et al. 2024) with a few reference models."""

    n_references: int = 4  # reference models per target (1–4 in the paper's low-cost setting)
    offline_a: float = 0.3  # linear approximation of Pr(x) from OUT references (offline)
    gamma: float = 1.0  # likelihood-ratio threshold against population samples
    online: bool = False  # use IN and OUT references (only with num_models ≥ 2·n_references)


@dataclass
class AuditAttackConfig:
    """One-run audit (Steinke, Nasr, Jagielski 2023): m canaries, each in the training set with prob. ½."""

    n_canaries: int = 256
    canary: str = "mislabelled"  # mislabelled held-out images (label flipped) | ood (inverted intensities)
    guess_fraction: float = 0.25  # k₊ = k₋ = this fraction of m, fixed before scoring


@dataclass
class PriorAwareAttackConfig:
    """Prior-aware reconstruction (Hayes, Mahloujifar, Balle 2023): pick the target among n candidates."""

    n_candidates: int = 10  # prior size n; the ReRo bound is evaluated at κ = 1/n
    trials: int = 200
    n_states: int = 10  # model states along the target's training that the adversary knows
    pool_size: int = 200  # training images the candidates of each trial are drawn from


@dataclass
class GradientInversionAttackConfig:
    """Gradient inversion of one client's DP-SGD update (Geiping et al. 2020; DLG, Zhu et al. 2019).

    The attacker sees the update of a batch of ``batch_size`` training images at the run's σ and C
    (per-sample clipping, noise σ·C, averaged), at the model's initial or trained weights, and
    optimises dummy images whose gradient matches it. Optimiser settings: attacks/reconstruction.py.
    """

    n_images: int = 16  # images attacked in total (n_images / batch_size client updates)
    batch_size: int = 1
    model_state: str = "init"  # init | trained
    labels: str = "known"  # known (granted by the threat model) | recovered (from the last layer)
    loss: str = "cosine"  # cosine (Geiping) | l2 (DLG)
    optimizer: str = "adam"  # adam (signed, Geiping) | lbfgs (DLG)
    iterations: int = 3000
    lr: float = 0.01
    signed: bool = True
    lr_decay: bool = True
    boxed: bool = True
    tv_weight: float = 1e-3
    restarts: int = 1
    init: str = "randn"
    eta_psnr: float = 20.0  # ReRo@η thresholds: an image counts as reconstructed at PSNR ≥ η_psnr …
    eta_ssim: float = 0.5  # … or (separately reported) SSIM ≥ η_ssim


@dataclass
class ImprintAttackConfig:
    """Imprint / trap-weight attack of a malicious server (Fowl et al. 2022), as Ziller et al. ran it.

    The server sends the client a model with an imprint block in front; the cut-offs of its bins
    are quantiles of a measurement of public images (the test split here, never training images).
    """

    batch_size: int = 16
    n_batches: int = 1  # client updates attacked (batch_size training images each)
    n_bins: int = 128
    measurement: str = "gaussian"  # gaussian (random directions) | mean (mean intensity)
    n_measurements: int = 4
    back_gain: float = 10.0
    model_state: str = "init"  # the base classifier behind the block: init | trained
    eta_psnr: float = 30.0  # an image counts as reconstructed at PSNR ≥ η (exact recovery is ≫ 30 dB)
    eta_ssim: float = 0.5


@dataclass
class SizingConfig:
    """How big the attacks are (configs/sizing/: quick for the default sweep, full for a study)."""

    membership_models: int = 6
    audit_canaries: int = 200
    prior_trials: int = 100
    inversion_images: int = 4
    inversion_iterations: int = 500
    imprint_batches: int = 1


@dataclass
class StatisticsConfig:
    """Levels of the run's statistics.

    ``alpha`` is family-wise: the membership intervals are simultaneous at 1 − α, and every
    empirical ε lower bound of a run (membership attacks, audits) is computed at α divided by their
    number, so that even the largest of them, which the report checks against the accountant's ε,
    errs with probability at most α.
    """

    alpha: float = 0.05


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    attack: Any = field(default_factory=dict)  # one entry per selected attack (configs/attack/)
    membership: MembershipConfig = field(default_factory=MembershipConfig)
    sizing: SizingConfig = field(default_factory=SizingConfig)
    statistics: StatisticsConfig = field(default_factory=StatisticsConfig)
    seed: int = 0
    # A sweep's folder under results_root: runs/, table.csv/.parquet and report.html/.md go there.
    name: str = "${dataset.name}-${model.name}"
    results_root: str = "results"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: Optional[int] = None  # torch CPU threads; None leaves torch's default
    progress: str = "auto"  # auto (bars on a terminal) | on | off
    report: Any = field(default_factory=dict)


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)


def is_private(epsilon: float) -> bool:
    return not math.isinf(epsilon)
