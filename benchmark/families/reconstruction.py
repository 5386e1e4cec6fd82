"""The reconstruction family: a server's attacks on one client update (gradient inversion, DLG, imprint).

Each result scores the reconstructions against the true images (PSNR, SSIM, MSE, NCC, each true
image matched to its best reconstruction) and gives ReRo@η, the share of images reconstructed past
a threshold η by each criterion (benchmark/reconstruction_run.py). The chance rule: any image
reconstructed past η. The report section sets each attack's setting and scores beside the ReRo
bounds of the run's recipe, draws success against ε, and shows the reconstructed images only where
the data is not real patient data or the user opted in.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field

import pandas as pd

from ..numbers import fmt
from .base import AttackResult, Family, Finding, label_of, register_family

METRICS = ("psnr_mean", "psnr_max", "ssim_mean", "ssim_max", "mse_mean", "ncc_mean")


@dataclass(frozen=True, kw_only=True)
class ReconstructionResult(AttackResult):
    rero: dict  # criterion ("psnr", "ssim") -> share of images reconstructed past η
    eta: dict = field(default_factory=dict)
    psnr_mean: float = math.nan
    ssim_mean: float = math.nan
    psnr_max: float = math.nan
    ssim_max: float = math.nan
    mse_mean: float = math.nan
    ncc_mean: float = math.nan
    model_state: str | None = None
    batch_size: int | None = None
    n_images: int | None = None
    grid: str | None = None

    def columns(self, name: str) -> dict:
        return {f"recon_{name}_psnr_mean": self.psnr_mean, f"recon_{name}_ssim_mean": self.ssim_mean,
                f"recon_{name}_rero_psnr": self.rero["psnr"], f"recon_{name}_rero_ssim": self.rero["ssim"]}


@register_family
class Reconstruction(Family):
    key = "reconstruction"
    title = "Reconstruction"
    rank = 40
    result = ReconstructionResult
    summary_columns = ("recon_best_rero", "rero_bound_train", "rero_bound_step")

    def bests(self, results: dict) -> dict:
        """``recon_best_rero``: the largest ReRo@η by PSNR over the reconstruction attacks."""
        return {"recon_best_rero": max(r.rero["psnr"] for r in results.values())} if results else {}

    def findings(self, label: str, result: ReconstructionResult) -> Iterator[Finding]:
        for metric, share in (result.rero or {}).items():
            if share > 0:
                eta = (result.eta or {}).get(metric, math.nan)
                yield Finding(label, f"{fmt(share)} of the images reconstructed past η = {eta:g} ({metric.upper()})",
                              f"{label} ReRo {fmt(share)} ({metric.upper()})")

    def intervals(self, result: ReconstructionResult) -> int:
        return len(result.rero or {})

    def strongest(self, label: str, result: ReconstructionResult) -> tuple[float, str]:
        return result.psnr_max, f"{label} ReRo 0, best PSNR {fmt(result.psnr_max)} dB"

    def setting(self, result: ReconstructionResult) -> str:
        return f"model state {result.model_state}, batch size {result.batch_size}, {result.n_images} images"

    def headline_columns(self, sweep, runs) -> list:
        from ..report.columns import Column, value

        return [Column("ReRo@η by PSNR (best attack)", value("recon_best_rero"), "recon_best_rero"),
                Column("ReRo bound γ, one client step (κ = 1/N)", value("rero_bound_step"), "rero_bound_step"),
                Column("ReRo bound γ, whole run (κ = 1/N)", value("rero_bound_train"), "rero_bound_train")]

    def frame(self, sweep) -> pd.DataFrame:
        """One row per (run, attack): its scores, its setting and the run's σ and clip norm C.

        ``rero_best`` is ReRo@η by PSNR, the criterion of the summary's ``recon_best_rero``. σ and C
        are the summary's ``sigma`` and ``max_grad_norm`` (0 and ∞ without DP), the noise and
        clipping of the client update each attack inverts.
        """
        rows = []
        for r in sweep.runs:
            for key, a in r.results(self.key).items():
                rows.append({
                    "sweep": sweep.label, "epsilon": r.epsilon, "reference": r.reference, "point": r.point.label,
                    "seed": r.seed, "key": key, "attack": label_of(key),
                    "rero_best": float(a.rero["psnr"]) if "psnr" in a.rero else math.nan, "shares": a.rero, "eta": a.eta,
                    **{m: getattr(a, m) for m in METRICS},
                    "model_state": a.model_state, "batch_size": a.batch_size, "n_images": a.n_images,
                    "sigma": float(r.summary["sigma"]), "max_grad_norm": float(r.summary["max_grad_norm"]),
                })
        return pd.DataFrame(rows)

    def section(self, ctx) -> None:
        frame = ctx.frame(self.key)
        if frame.empty and not any(r.record.get("bounds") for s in ctx.sweeps for r in s.runs):
            return
        from ..report import attack_figures
        from ..report.records import baseline_only
        from ..report.tables import BOUNDS_CAPTION, bounds_table

        ctx.doc.heading(self.title)
        for sweep in ctx.sweeps:
            ctx.sub(sweep)
            part = ctx.part(frame, sweep)
            if len(part):
                ctx.doc.paragraph("Setting of the reconstruction attacks (each attacks one client update made with the "
                                  "run's noise multiplier σ and clip norm C):")
                ctx.doc.table(*setting_table(part))
                ctx.doc.paragraph("Reconstruction attacks (each true image matched to its best reconstruction):")
                ctx.doc.table(*score_table(part))
            bounds = bounds_table(sweep, ctx.runs[sweep.label])
            if bounds[1]:
                ctx.doc.paragraph(BOUNDS_CAPTION + ":")
                ctx.doc.table(*bounds)
        ctx.doc.figure(attack_figures.reconstruction(baseline_only(ctx.all_runs), baseline_only(frame),
                                              ctx.fig_path("reconstruction_vs_epsilon.png")),
                       "Reconstruction success against ε: the share of images each attack reconstructs past η (ReRo@η by "
                       "the PSNR criterion, the one the tables' 'ReRo@η by PSNR' column holds), the prior-aware attack's "
                       "success with its chance 1/n, and the ReRo bounds γ computed from each run's σ, q and T (red, "
                       "black). Points: means over seeds; error bars: standard deviation over seeds (the tables give "
                       "each run's confidence interval).")
        if len(frame):
            grids(ctx)


def setting_table(recon: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """What each reconstruction attack attacked, per budget; seeds with the same setting share a row."""
    from ..report.formatting import join

    header = ["ε", "attack", "model state", "batch size", "images", "σ", "clip norm C", "seeds"]
    text = {"model_state": str, "batch_size": lambda v: str(int(v)), "n_images": lambda v: str(int(v)), "sigma": fmt,
            "max_grad_norm": fmt}
    shown = recon.assign(**{c: recon[c].map(lambda v, f=f: "–" if pd.isna(v) else f(v)) for c, f in text.items()})
    rows = []
    for (eps, point, _, attack, *values), group in shown.groupby(["epsilon", "point", "key", "attack", *text], sort=False):
        rows.append([point, str(attack), *values, join(sorted(group["seed"]))])
    return header, rows


def score_table(recon: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Each reconstruction attack of each run: image similarity and ReRo@η."""
    header = ["ε", "seed", "attack", "PSNR mean / max (dB)", "SSIM mean / max", "MSE mean", "NCC mean",
              "ReRo@η PSNR", "ReRo@η SSIM", "η (PSNR dB, SSIM)"]
    rows = [[a.point, str(a.seed), a.attack, f"{fmt(a.psnr_mean)} / {fmt(a.psnr_max)}",
             f"{fmt(a.ssim_mean)} / {fmt(a.ssim_max)}", fmt(a.mse_mean), fmt(a.ncc_mean),
             fmt(a.shares.get("psnr")), fmt(a.shares.get("ssim")),
             f"{a.eta.get('psnr', math.nan):g} dB, {a.eta.get('ssim', math.nan):g}"]
            for a in recon.itertuples()]
    return header, rows


def grids(ctx) -> None:
    """The recorded reconstruction grids, withheld for real patient data unless the user opted in."""
    from ..numbers import format_epsilon
    from ..report.document import safe_file_part
    from ..report.formatting import epsilon_label
    from ..report.records import grid_file

    ctx.doc.heading("Reconstructed images", 3)
    for sweep in ctx.sweeps:
        if sweep.real_patient_data and not ctx.show_reconstructions:
            ctx.doc.note(
                f"Reconstructed images of {sweep.label} withheld: its dataset holds real patient data, and "
                "reconstructions of it are patient data too. To include them, rebuild the report with "
                f"medprivbench-report {sweep.folder} --show-reconstructions (or run the sweep with "
                "report.show_reconstructions=true).")
            continue
        shown = 0
        for eps in sweep.budgets:
            run = sweep.at(eps)[0]
            for key, attack in run.results(Reconstruction.key).items():
                source = grid_file(run, attack)
                if source is None:
                    continue
                name = f"recon_{sweep.label}_eps={format_epsilon(eps)}_seed={run.seed}_{key}.png"
                target = ctx.fig_path(safe_file_part(name))
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                ctx.doc.figure(target, f"{sweep.label}, ε = {epsilon_label(eps)}, seed {run.seed}: {label_of(key)} "
                                       f"reconstructions as recorded by the run (PSNR mean {fmt(attack.psnr_mean)} dB).")
                shown += 1
        if not shown:
            ctx.doc.paragraph(f"{sweep.label}: no reconstruction grid was recorded.")
