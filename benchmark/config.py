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

# The non-private references an ε = ∞ point trains (privacy.references), in the order they are reported.
SAME_RECIPE, TUNED = "same_recipe", "tuned"
REFERENCES = (SAME_RECIPE, TUNED)


@dataclass
class DatasetConfig:
    # "synthetic" / "synthetic3d" (embedded images / volumes, offline), "imagefolder" (your own
    # images or volumes), or a MedMNIST subset such as "pneumoniamnist" or "adrenalmnist3d" read
    # from <root>/<name>.npz; for task=segmentation "phantom2d" / "phantom3d" (embedded organ and
    # lesion phantoms with masks) or "segfolder" (your own images or volumes with label masks).
    name: str = "synthetic"
    root: str = "${oc.env:MEDPRIVBENCH_DATA,'~/.medmnist'}"
    size: int = 28  # MedMNIST file resolution (2D: 28, 64, 128, 224; 3D: 28, 64); image or volume side for imagefolder, synthetic3d, phantom2d/3d, segfolder
    download: bool = False  # let the medmnist package fetch a missing file (needs network)
    # synthetic only: split sizes, label-noise rate and the generator seed
    n_train: int = 1000
    n_val: int = 500
    n_test: int = 1000
    label_noise: float = 0.03
    # synthetic only: share of rare findings (a long tail: atypical images, labels a coin flip)
    rare_fraction: float = 0.0
    generator_seed: int = 0
    # imagefolder only
    channels: int = 1
    test_fraction: float = 0.2
    real_patient_data: bool = True
    # imagefolder volumes (NIfTI, DICOM) only: [lo, hi] clips intensities to this fixed window and
    # maps lo → 0, hi → 1 (CT in Hounsfield units: [-1000, 1000]); None maps each volume's own
    # minimum → 0 and maximum → 1
    window: Optional[list[float]] = None
    # any dataset: keep at most this many training images (a stratified random subset), for quick runs
    max_train: Optional[int] = None


@dataclass
class ModelConfig:
    name: str = "cnn"  # cnn | resnet9 | resnet18 | densenet121 | scatternet | unet (a segmenter: task=segmentation)
    width: int = 16  # channels of the first stage (cnn, resnet9: 64 in Ziller et al.; unet: 16)
    activation: str = "tanh"  # tanh | relu | elu | silu (cnn, resnet9, unet)
    norm_groups: int = 4  # GroupNorm groups (BatchNorm is replaced: it mixes samples and breaks DP)
    weight_standardization: bool = False  # resnet9 and unet only (Ziller et al. use it)
    # downsampling between stages: max | avg (cnn, resnet9, scatternet, unet). Average pooling keeps
    # every pixel in the gradient (measured: gradient inversion gains nothing from it on this CNN).
    pool: str = "max"
    # per-sample gradient engine: auto (the fastest correct mode measured for this model),
    # hooks | ghost | functorch | ew | vmap (torch.func over the whole model: benchmark/vmap_engine.py)
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
    # ε = ∞ only: the non-private references, each a run of its own: same_recipe (the DP recipe with no
    # clipping and no noise: same optimiser, epochs, lr, schedule, batch; every Δ is against it) and
    # tuned (the non-private recipe, train.nonprivate)
    references: list = field(default_factory=lambda: list(REFERENCES))
    # which reference one run is (set per run from ``references``; null for DP runs): not a user setting
    reference: Optional[str] = None


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
    # per-image signals the membership attacks score: logits (a classifier); loss and/or dice (a
    # segmenter, set by configs/task/segmentation.yaml)
    signals: list = field(default_factory=lambda: ["logits"])


@dataclass
class SizingConfig:
    """How big the attacks are (configs/sizing/: quick for the default sweep, full for a study)."""

    membership_models: int = 6
    whitebox_canaries: int = 5000
    audit_canaries: int = 200
    prior_trials: int = 100
    inversion_images: int = 4
    inversion_iterations: int = 500
    imprint_batches: int = 1


@dataclass
class LoggerConfig:
    """Experiment tracking (benchmark/tracking.py): ``none``, or ``mlflow`` (``logger=mlflow``)."""

    name: str = "none"
    tracking_uri: Optional[str] = None  # None: file store <results_root>/mlruns
    experiment: Optional[str] = None  # None: the sweep's name


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
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    task: str = "classification"  # classification | segmentation (configs/task/)
    seed: int = 0
    # A sweep's folder under results_root: runs/, table.csv/.parquet and report.html/.md go there.
    name: str = "${dataset.name}-${model.name}"
    results_root: str = "results"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: Optional[int] = None  # torch CPU threads; None leaves torch's default
    # Shadow (pool) models trained at once, in worker processes of one thread each: 1 = one after
    # another in this process; 0 = one per CPU core on a CPU (1 on a GPU). Results do not depend on
    # it (benchmark/shadow.py). Workers pay off on long stages (3D: 1.16× on 2 cores) and lose on
    # short ones (each imports torch), so the default stays serial.
    shadow_workers: int = 1
    progress: str = "auto"  # auto (bars on a terminal) | on | off
    report: Any = field(default_factory=dict)


def register_configs() -> None:
    """The typed schema of the whole configuration, and (through the attack registry) each attack's."""
    from .registry import load

    ConfigStore.instance().store(name="base_config", node=Config)
    load()


def is_private(epsilon: float) -> bool:
    return not math.isinf(epsilon)
