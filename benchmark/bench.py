"""``medprivbench-bench``: measure and print the cost of privacy and the speed of every stage.

Everything is measured in one invocation, on this machine, so the ratios (DP step time over
non-private step time) compare like with like. Each phase runs in a fresh subprocess so that its
peak memory (max RSS; peak CUDA memory on a GPU) is its own.

Phases:
  privacy-cost   per model and per-sample-gradient engine: DP-SGD step / non-private step
                 (2D classifiers on 28×28 images, the U-Net segmenter on 32×32; with ``--volumes``
                 also the 3D models on 28³ volumes, the U-Net on 16³: benchmark/bench_unet.py)
  training       target training and the shadow-model stage: samples/s, peak memory
  attacks        gradient-inversion iterations/s, imprint time, ReRo bound at κ = 1/N
  sweeps         wall time of the default sweep and (``--full``) of a full PneumoniaMNIST sweep
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from .bench_report import print_report

PHASES = ("privacy-cost", "training", "attacks", "sweeps")
DEFAULT_MODELS = ("cnn", "scatternet", "resnet9", "resnet18", "densenet121", "unet")
# On a CPU the large models take minutes per engine (ResNet-9 trains at about 24 samples/s under DP
# on 2 cores): the default set there is the CPU models; name the others with --models.
CPU_MODELS = ("cnn", "scatternet")
# Batch sizes per model for the step-time measurement (the big ones are GPU models on CPU).
STEP_BATCH = {"cnn": 256, "scatternet": 256, "resnet9": 32, "resnet18": 32, "densenet121": 16}
# Volumes (28³, AdrenalMNIST3D's size): batch per model for the 3D step-time measurement.
STEP_BATCH_3D = {"cnn": 64, "resnet9": 4, "resnet18": 4, "densenet121": 4}
MODEL_SETTINGS = {
    "cnn": dict(width=16, activation="tanh", norm_groups=4),
    "scatternet": dict(width=32, activation="tanh", norm_groups=27),
    "resnet9": dict(width=64, activation="relu", norm_groups=16, weight_standardization=True),
    "resnet18": dict(width=64, activation="relu", norm_groups=32),
    "densenet121": dict(width=64, activation="relu", norm_groups=32),
}
# Engines of this project rather than Opacus' (no ``PrivacyEngine`` knows them): benchmark/noise.py assembles them.
OWN_ENGINES = ("vmap",)
FULL_SWEEP = ["dataset=pneumoniamnist", "'privacy.epsilon=1,8,1e3,1e6,inf'", "membership.num_models=16"]


def _device(name: str):
    import torch

    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))


def _peak_memory_mb(device) -> dict:
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        import torch

        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def _model_cfg(name: str, mode: str = "auto"):
    from omegaconf import OmegaConf

    from .config import ModelConfig

    return OmegaConf.structured(ModelConfig(name=name, grad_sample_mode=mode, **MODEL_SETTINGS[name]))


class _Stepper:
    """One model set up for non-private (``mode`` None) or DP training with one engine."""

    def __init__(self, name: str, mode: str | None, batch: int, device, spatial_dims: int = 2):
        import torch
        import torch.nn as nn
        from opacus import PrivacyEngine

        from .models import build_model, split_frozen
        from .training import compute_features

        torch.manual_seed(0)
        model = build_model(_model_cfg(name), in_channels=1, n_classes=2, image_size=28, spatial_dims=spatial_dims).to(device)
        frozen, self.trainable = split_frozen(model)
        x = torch.rand(batch, 1, *(28,) * spatial_dims, generator=torch.Generator().manual_seed(1))
        y = torch.randint(0, 2, (batch,), generator=torch.Generator().manual_seed(2))
        if frozen is not None:
            x = compute_features(frozen, x, device)
        self.x, self.y, self.device = x.to(device), y.to(device), device
        self.opt = torch.optim.SGD(self.trainable.parameters(), lr=0.0)
        self.crit = nn.CrossEntropyLoss()
        self.module = self.trainable
        if mode in OWN_ENGINES:  # not Opacus' engines: assembled as training assembles them
            from .noise import make_private

            parts = make_private(self.trainable, self.opt, self.crit, grad_sample_mode=mode, noise_multiplier=0.0,
                                 max_grad_norm=1.0, expected_batch_size=batch, generator=None)
            self.module, self.opt = parts.module, parts.optimizer
        elif mode is not None:
            loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x.cpu(), y.cpu()), batch_size=batch)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = PrivacyEngine().make_private(
                    module=self.trainable, optimizer=self.opt, data_loader=loader, criterion=self.crit,
                    noise_multiplier=0.0, max_grad_norm=1.0, grad_sample_mode=mode, poisson_sampling=False)
            self.module, self.opt = out[0], out[1]
            if mode == "ghost":
                self.crit = out[2]
        self.times: list[float] = []
        self.first_update = None

    def step(self, record: bool) -> None:
        import torch

        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda *_: None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sync(self.device)
            t = time.perf_counter()
            self.opt.zero_grad(set_to_none=True)
            per_sample_backward = getattr(self.module, "per_sample_backward", None)  # the vmap engine
            if per_sample_backward is not None:
                per_sample_backward(self.x, self.y)
            else:
                self.crit(self.module(self.x), self.y).backward()
            self.opt.step()
            sync(self.device)
        if record:
            self.times.append(time.perf_counter() - t)
        if self.first_update is None:
            self.first_update = [p.grad.detach().flatten().cpu() for p in self.trainable.parameters() if p.grad is not None]

    @property
    def median_s(self) -> float:
        t = sorted(self.times)
        return t[len(t) // 2]


def _case(name: str, dims: int, device):
    """One privacy-cost case: (mode → its stepper, mode None non-private; batch; input size; model config).

    Classifiers take 28² images (28³ volumes); segmenters (the U-Net) their own sizes, masks and
    loss (benchmark/bench_unet.py)."""
    from . import bench_unet as seg

    if name in seg.SEGMENTERS:
        return (lambda mode: seg.SegmenterStepper(name, mode, device, dims), seg.SEGMENTER_BATCH[dims],
                seg.input_label(dims), seg.segmenter_cfg(name))
    batch = (STEP_BATCH if dims == 2 else STEP_BATCH_3D).get(name, 64)
    return (lambda mode: _Stepper(name, mode, batch, device, dims), batch, "28³" if dims == 3 else "28²",
            _model_cfg(name))


def phase_privacy_cost(models: list[str], steps: int, device, volumes: bool = False) -> list[dict]:
    """DP step / non-private step per model and engine, timed in interleaved rounds.

    Every round times one step of each variant in turn, so that a slow moment of a shared
    machine hits all variants alike; the medians over rounds are compared. 'correct': the
    engine's clipped update equals the hooks engine's (the reference tested against brute force).
    """
    import torch

    from .bench_unet import SEGMENTERS
    from .models import GRAD_SAMPLE_MODES, grad_sample_mode

    rows = []
    cases = [(name, 2) for name in models]
    if volumes:
        cases += [(name, 3) for name in models if name in STEP_BATCH_3D or name in SEGMENTERS]
    for name, dims in cases:
        make, batch, size, cfg = _case(name, dims, device)
        variants: dict = {None: make(None)}
        errors = {}
        for mode in ("hooks",) + tuple(m for m in GRAD_SAMPLE_MODES if m != "hooks"):
            try:
                variants[mode] = make(mode)
                variants[mode].step(record=False)  # also surfaces engines that cannot run this model
            except Exception as exc:
                variants.pop(mode, None)
                errors[mode] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
        for round_ in range(steps + 2):
            for stepper in variants.values():
                stepper.step(record=round_ >= 2)
        base = variants.pop(None).median_s
        reference = variants["hooks"].first_update if "hooks" in variants else None
        for mode, stepper in variants.items():
            # atol scaled to the tensor's magnitude (never below 1e-6): float32 sums in another order
            # (vmap's per-sample kernels) differ by about 1e-7 of the largest entry, not of each entry
            correct = reference is not None and all(
                torch.allclose(a, b, rtol=1e-3, atol=max(1e-6, 1e-5 * float(b.abs().max())))
                for a, b in zip(stepper.first_update, reference))
            rows.append({"model": name, "input": size, "mode": mode, "batch": batch,
                         "nonprivate_step_ms": 1e3 * base,
                         "dp_step_ms": 1e3 * stepper.median_s, "ratio": stepper.median_s / base,
                         "correct": bool(correct), "default": mode == grad_sample_mode(cfg)})
        rows += [{"model": name, "input": size, "mode": mode, "batch": batch, "error": err}
                 for mode, err in errors.items()]
    return rows


def phase_training(n_train: int, epochs: int, num_models: int, device) -> dict:
    """Throughput of a real target training and of the shadow-model stage (DP, ε = 8)."""
    import torch
    from omegaconf import OmegaConf

    from medprivbench.datasets.synthetic import load_synthetic

    import numpy as np

    from .config import PrivacyConfig, TrainConfig
    from .experiment import ModelBuilder
    from .models import grad_sample_mode
    from .shadow import train_pool
    from .recipe import effective_train, make_recipe
    from .streams import Streams
    from .training import train

    ds = load_synthetic(n_train=n_train, n_val=10, n_test=200)
    cfg_model = _model_cfg("cnn")
    tcfg = OmegaConf.structured(TrainConfig(epochs=epochs))
    recipe = make_recipe(OmegaConf.structured(PrivacyConfig(epsilon=8.0)), tcfg, ds.n_train)
    hp = effective_train(tcfg, 8.0, None)
    mode = grad_sample_mode(cfg_model)

    build = ModelBuilder(OmegaConf.to_container(cfg_model), 1, 2, 28, 2)
    x, y = torch.from_numpy(ds.train_x), torch.from_numpy(ds.train_y)
    streams = Streams(0)
    target = train(build(streams), x, y, recipe=recipe, hp=hp, grad_sample_mode=mode, streams=streams, device=device)
    # The shadow stage at 1, 2, … workers (one thread each; 1 worker: this process with torch's threads).
    stages, reference = [], None
    counts = [1] if device.type != "cpu" else sorted({1, *[w for w in (2, 4, 8, 16) if w <= (os.cpu_count() or 1)]})
    for workers in counts:
        start = time.perf_counter()
        pool = train_pool(build=build, x=x, y=y, x_test=torch.from_numpy(ds.test_x), y_test=ds.test_y,
                          x_population=torch.from_numpy(ds.val_x), y_population=ds.val_y, recipe=recipe, hp=hp,
                          grad_sample_mode=mode, num_models=num_models, queries=["identity", "hflip"], streams=streams,
                          device=device, workers=workers)
        wall = time.perf_counter() - start
        reference = pool.logits if reference is None else reference
        stages.append({"workers": workers, "seconds": wall, "samples_per_s": int(pool.member.sum()) * epochs / wall,
                       "max_abs_logit_difference_to_1_worker": float(np.abs(pool.logits - reference).max())})
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"model": "cnn", "grad_sample_mode": mode, "n_train": n_train, "epochs": epochs,
            "target_samples_per_s": target.samples_per_s, "target_train_s": target.wall_time_s,
            "shadow_models": num_models, "shadow_stages": stages, "peak_worker_rss_mb": children, **_peak_memory_mb(device)}


def phase_attacks(device, n_train: int = 4690) -> dict:
    """Gradient-inversion iterations/s, imprint reconstruction time, ReRo bound at κ = 1/N."""

    from medprivbench.attacks.bounds import rero_bound

    from .privacy import solve_noise_multiplier

    out: dict = {}
    q, steps = 256 / n_train, 20 * round(n_train / 256)
    sigma = solve_noise_multiplier(epsilon=8.0, delta=1e-5, sample_rate=q, steps=steps, accountant="rdp").sigma
    t = time.perf_counter()
    gamma = rero_bound(1.0 / n_train, sigma, q, steps)
    out["rero_bound"] = {"kappa": 1.0 / n_train, "sigma": sigma, "sample_rate": q, "steps": steps,
                         "gamma": gamma, "seconds": time.perf_counter() - t}
    out.update(_bench_reconstruction(device))
    out.update(_peak_memory_mb(device))
    return out


def _bench_reconstruction(device) -> dict:
    import torch

    from medprivbench.attacks import reconstruction as rec
    from medprivbench.datasets.synthetic import generate_images

    from .models import build_model

    images, labels = generate_images(16, seed=3)
    x = torch.from_numpy(images[:, None].astype("float32") / 255.0)
    y = torch.from_numpy(labels)
    torch.manual_seed(0)
    model = build_model(_model_cfg("cnn"), in_channels=1, n_classes=2, image_size=28).to(device).eval()
    update = rec.simulate_client_update(model, x[:1].to(device), y[:1].to(device), noise_multiplier=0.0,
                                        max_grad_norm=math.inf)
    config = rec.InversionConfig(iterations=200, restarts=1)
    t = time.perf_counter()
    rec.invert_gradients(model, update, config, seed=0)
    gi = time.perf_counter() - t
    out = {"gradient_inversion": {"model": "cnn", "batch_size": 1, "iterations": 200,
                                  "iterations_per_s": 200 / gi, "seconds": gi}}
    from medprivbench.attacks.imprint import ImprintAttack, imprint_client_update

    public, _ = generate_images(512, seed=4)  # the server's public images set the bins' cut-offs
    attack = ImprintAttack((1, 28, 28), 64, public[:, None].astype("float32") / 255.0)
    t = time.perf_counter()
    _, upd = imprint_client_update(attack, model, x.to(device), y.to(device), noise_multiplier=0.0,
                                   max_grad_norm=math.inf)
    attack.reconstruct(upd)
    out["imprint"] = {"batch_size": 16, "n_bins": 64, "seconds": time.perf_counter() - t}
    return out


def phase_sweeps(full: bool, keep: Path | None) -> dict:
    """Wall time of the default sweep (and, with ``full``, of a full PneumoniaMNIST sweep)."""
    out = {}
    root = Path(tempfile.mkdtemp(prefix="medprivbench-bench-")) if keep is None else keep
    runs = [("default_sweep", [])]
    if full:
        data = os.environ.get("MEDPRIVBENCH_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
        runs.append(("pneumoniamnist_full_sweep", [*FULL_SWEEP, f"dataset.root={data}"]))
    for label, args in runs:
        cmd = f"{sys.executable} -c 'from medprivbench.benchmark.cli import main; main()' {' '.join(args)} results_root={root / label} progress=off"
        t = time.perf_counter()
        proc = subprocess.run(cmd, shell=True, capture_output=True, text=True)
        out[label] = {"seconds": time.perf_counter() - t, "returncode": proc.returncode, "results": str(root / label),
                      "args": args}
        if proc.returncode:
            out[label]["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
    return out


# ----------------------------------------------------------------------------- driver
def _run_phase(phase: str, args) -> dict:
    """Run one phase in a fresh interpreter and return its JSON result."""
    cmd = [sys.executable, "-m", "medprivbench.benchmark.bench", "--phase", phase, "--device", args.device,
           "--models", ",".join(args.models), "--steps", str(args.steps)]
    if args.full:
        cmd.append("--full")
    if args.volumes:
        cmd.append("--volumes")
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-3:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medprivbench-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", default="privacy-cost,training,attacks,sweeps",
                        help=f"comma-separated subset of {', '.join(PHASES)}")
    parser.add_argument("--models", default=None,
                        help=f"models for the privacy-cost phase (default: {','.join(DEFAULT_MODELS)} on a GPU, "
                             f"{','.join(CPU_MODELS)} on a CPU)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement (after 2 warm-up steps)")
    parser.add_argument("--full", action="store_true", help="also time a full PneumoniaMNIST sweep (about an hour on 2 cores)")
    parser.add_argument("--volumes", action="store_true", help="privacy-cost: also the 3D models on 28³ volumes")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # internal: run one phase in this process
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(args.device)
    if args.models is None:
        args.models = ",".join(DEFAULT_MODELS if device.type == "cuda" else CPU_MODELS)
    args.models = [m for m in args.models.split(",") if m]
    if args.phase:  # child process: one phase, JSON on the last line of stdout
        if args.phase == "privacy-cost":
            result = phase_privacy_cost(args.models, args.steps, device, volumes=args.volumes)
        elif args.phase == "training":
            result = phase_training(n_train=2000, epochs=3, num_models=4, device=device)
        elif args.phase == "attacks":
            result = phase_attacks(device)
        else:
            result = phase_sweeps(args.full, None)
        print(json.dumps(result))
        return 0

    import opacus

    phases = [p for p in args.phases.split(",") if p]
    bad = [p for p in phases if p not in PHASES]
    if bad:
        parser.error(f"--phases {','.join(bad)} is not valid; choose from {', '.join(PHASES)}")
    results: dict = {"environment": {"device": str(device), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
                                     "torch": torch.__version__, "opacus": opacus.__version__, "platform": platform.platform(),
                                     "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None}}
    for phase in phases:
        print(f"[medprivbench-bench] {phase} …", file=sys.stderr, flush=True)
        results[phase] = _run_phase(phase, args)
    print_report(results, PHASES)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
