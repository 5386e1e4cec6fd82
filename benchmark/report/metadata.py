"""The run metadata table: what was trained, how, on what, with which software, and each attack's setting.

One :class:`MetaField` per row. A field read from each run is shown once where every run agrees,
else grouped by budget; a field of the whole sweep (seeds, run time) is computed from all its runs.
Attacks with a setting of their own get one row each, named by their registry label, in the words
of their family (``Family.setting``, benchmark/families).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import registry
from .formatting import epsilon_label, fmt, join, pairs
from .records import Run, Sweep


@dataclass(frozen=True)
class MetaField:
    """A row of the metadata table: read from each run (and grouped by budget) or from the whole sweep."""

    name: str
    per_run: Callable[[Run], object] | None = None
    per_sweep: Callable[[Sweep], str] | None = None

    def describe(self, sweep: Sweep) -> str:
        if self.per_sweep is not None:
            return self.per_sweep(sweep)
        groups: dict[str, list[float]] = {}
        for run in sweep.runs:
            try:
                value = self.per_run(run)
            except (KeyError, TypeError, AttributeError):
                value = None
            if value is not None and value != "":
                groups.setdefault(str(value), []).append(run.epsilon)
        if len(groups) <= 1:
            return next(iter(groups), "–")
        return "; ".join(f"{v} (ε = {join(epsilon_label(e) for e in sorted(set(eps)))})" for v, eps in groups.items())


def _ds(r: Run) -> dict:
    return r.record["dataset"]


def _train(r: Run) -> dict:
    return r.record.get("train") or {}


def _privacy(r: Run) -> dict:
    return r.record.get("privacy") or {}


def _env(r: Run) -> dict:
    return r.record.get("environment") or {}


def _run_time(sweep: Sweep) -> str:
    total = sum(float(r.record.get("wall_time_s", 0.0)) for r in sweep.runs)
    return f"{total / 60:.1f} min over {len(sweep.runs)} runs"


def _stages(r: Run) -> str | None:
    """Where a run's time went: each recorded stage in seconds (runs recorded before timings: None)."""
    timings = r.record.get("timings_s")
    return ", ".join(f"{stage.removeprefix('attack:')} {seconds:.0f}" for stage, seconds in timings.items()) if timings else None


def _completed(sweep: Sweep) -> str:
    stamps = [t for t in (r.completed_at for r in sweep.runs) if t is not None]
    if not stamps:
        return "–"
    first, last = (time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) for t in (min(stamps), max(stamps)))
    return first if first == last else f"{first} to {last}"


def _membership_protocol(r: Run) -> str | None:
    p = r.protocol("membership")
    return f"{p['num_models']} models, queries {join(p.get('queries', []))}" if p else None


VERSIONED = ("medprivbench", "python", "torch", "opacus", "monai", "numpy")
RUN_FIELDS: tuple[MetaField, ...] = (
    MetaField("dataset", lambda r: _ds(r).get("name")),
    MetaField("source", lambda r: _ds(r).get("source")),
    MetaField("licence", lambda r: _ds(r).get("licence")),
    MetaField("citation", lambda r: _ds(r).get("citation")),
    MetaField("real patient data", lambda r: "yes" if _ds(r).get("real_patient_data", True) else "no (synthetic or public)"),
    MetaField("classes", lambda r: join(_ds(r).get("class_names", []))),
    MetaField("images (channels × height × width)",
              lambda r: f"{_ds(r)['n_channels']} × {' × '.join(map(str, _ds(r)['image_size']))}"),
    MetaField("train / validation / test images",
              lambda r: f"{_ds(r).get('n_train')} / {_ds(r).get('n_val', '–')} / {_ds(r).get('n_test')}"),
    MetaField("duplicates dropped", lambda r: pairs(_ds(r).get("duplicates_dropped"))),
    MetaField("model", lambda r: f"{r.record['model']['name']} ({r.record['model']['parameters']:,} parameters)"),
    MetaField("per-sample gradients", lambda r: r.record["model"].get("grad_sample_mode")),
    MetaField("optimiser", lambda r: f"{_train(r)['optimizer']}, learning rate {_train(r)['lr']}, momentum "
                                     f"{_train(r)['momentum']}, weight decay {_train(r)['weight_decay']}, "
                                     f"{_train(r)['lr_schedule']} schedule"),
    MetaField("epochs / expected batch size", lambda r: f"{_train(r)['epochs']} / {_train(r)['batch_size']}"),
    MetaField("sampling rate q / steps T", lambda r: f"{fmt(float(_privacy(r)['sample_rate']))} / {_privacy(r)['steps']}"),
    MetaField("clip norm C / δ", lambda r: f"{_privacy(r)['max_grad_norm']} / {_privacy(r)['delta']}"),
    MetaField("accountant", lambda r: _privacy(r).get("accountant")),
    MetaField("accountant note", lambda r: _privacy(r).get("accountant_note") or None),
    MetaField("randomness", lambda r: ("operating system CSPRNG for sampling and noise (not reproducible)"
                                       if _privacy(r).get("secure_rng") else
                                       "seeded streams per purpose and model (reproducible; private only while the seed "
                                       "is secret)")),
    MetaField("membership protocol", _membership_protocol),
)
SWEEP_FIELDS: tuple[MetaField, ...] = (
    MetaField("seeds", per_sweep=lambda s: join(sorted({r.seed for r in s.runs}))),
    MetaField("versions", lambda r: join(f"{k} {_env(r)[k]}" for k in VERSIONED if _env(r).get(k))),
    MetaField("platform", lambda r: _env(r).get("platform")),
    MetaField("device / threads", lambda r: f"{_env(r)['device']} / {_env(r)['threads']}"),
    MetaField("run time", per_sweep=_run_time),
    MetaField("time per stage (s; attacks include what they share, e.g. the pool)", lambda r: _stages(r)),
    MetaField("completed", per_sweep=_completed),
    MetaField("results folder", per_sweep=lambda s: str(s.folder)),
)
def _attack_setting(spec: registry.Attack) -> MetaField:
    def read(r: Run) -> str | None:
        result = r.attacks.get(spec.name)
        return spec.family.setting(result) if result is not None else None

    return MetaField(spec.label, read)


def metadata_fields() -> tuple[MetaField, ...]:
    """The rows of the metadata table: the run's recipe, each registered attack's setting, the sweep's facts."""
    return RUN_FIELDS + tuple(_attack_setting(spec) for spec in registry.load().values()) + SWEEP_FIELDS
