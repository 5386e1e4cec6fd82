"""The budget report: at each privacy budget ε, what accuracy do we keep and what can an attacker still do?

Built from the run records of one sweep folder (or several, side by side) without rerunning
anything. Writes ``report.html`` (one self-contained file: figures embedded as data URIs, a
Content-Security-Policy that forbids any outside resource) and ``report.md`` (figures linked from
``figures/``).

Rules the code keeps:

* Every number comes from the run records (benchmark/store.py) or is computed from them here;
  every sentence of the summary is chosen by a test on those numbers.
* Every string that comes from data, configuration or the file system is escaped (HTML, and the
  Markdown that could carry HTML or links).
* Reconstructed images of real patient data are patient data: they are shown only when the user
  opts in (``show_reconstructions``), and the report says when they were withheld.

"An attack beats chance" (the rule of :data:`CHANCE_RULES`, stated in the report): a membership
attack's AUC confidence interval lies above 0.5, or its TPR interval at an FPR level lies above
that level, or an empirical or audit ε lower bound is above 0, or the prior-aware attack's success
interval lies above chance, or a reconstruction attack reconstructs any image past its threshold
(ReRo share > 0).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import comb
from scipy.stats import rankdata

from . import figures, registry, store
from .errors import ConfigError

log = logging.getLogger("medprivbench")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TOP_VULNERABLE = 5
FIGURE_LIST = ".report-files"  # figures/ files written by the last build, removed by the next


def attack_label(key: str) -> str:
    return registry.label(key)


def epsilon_label(eps: float) -> str:
    return "∞ (non-private)" if math.isinf(eps) else store.format_epsilon(eps)


def fmt(value, digits: int = 3) -> str:
    """A number for a table or sentence: 3 decimals, or 3 significant digits when very large/small."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, (float, np.floating)):
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
            return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m[1] == "-" else "") + m[2], f"{value:.3g}")
        return f"{value:.{digits}f}"
    return str(value)


def fmt_signed(value: float) -> str:
    return "–" if math.isnan(value) else ("+" if value >= 0 else "−") + fmt(abs(value))


def fmt_ci(value: float, lo: float, hi: float) -> str:
    return f"{fmt(value)} [{fmt(lo)}, {fmt(hi)}]"


def fmt_percent(level: float) -> str:
    return f"{100 * level:g}%"


# ============================================================================= records
@dataclass(frozen=True)
class Run:
    """One complete run folder and its record (benchmark/experiment.py)."""

    folder: Path
    record: dict

    @property
    def summary(self) -> dict:
        return self.record["summary"]

    @property
    def epsilon(self) -> float:
        return float(self.summary["epsilon"])

    @property
    def seed(self) -> int:
        return int(self.record["seed"])

    @property
    def attacks(self) -> dict:
        return self.record.get("attacks") or {}

    def family(self, family: str) -> dict:
        """The run's results of one attack family (benchmark/registry.py), by attack name."""
        registry.load()
        return {k: v for k, v in self.attacks.items() if registry.ATTACKS[k].family == family}

    @property
    def membership(self) -> dict:
        """Every membership variant's metrics, by variant key (e.g. lira_online)."""
        return {key: m for result in self.family("membership").values() for key, m in result["variants"].items()}

    @property
    def membership_threats(self) -> dict:
        return {key: result["threat_model"] for result in self.family("membership").values() for key in result["variants"]}

    @property
    def audit(self) -> dict | None:
        return next(iter(self.family("audit").values()), None)

    @property
    def reconstruction(self) -> dict | None:
        """Bounds, the prior-aware game and the image reconstruction attacks of the run."""
        found = self.family("reconstruction")
        games = self.family("prior_aware")
        if not found and not games and not self.record.get("bounds"):
            return None
        return {"bounds": self.record.get("bounds") or {}, "prior_aware": next(iter(games.values()), None), "attacks": found}

    @property
    def completed_at(self) -> float | None:
        try:
            return float(json.loads((self.folder / store.MANIFEST).read_text())["completed_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


@dataclass
class Sweep:
    folder: Path
    label: str
    runs: list[Run]

    @property
    def budgets(self) -> list[float]:
        return sorted({r.epsilon for r in self.runs})

    def at(self, eps: float) -> list[Run]:
        return sorted((r for r in self.runs if r.epsilon == eps), key=lambda r: r.seed)

    @property
    def real_patient_data(self) -> bool:
        """True unless every run's dataset says it holds no real patient data (unknown counts as real)."""
        return any(r.record["dataset"].get("real_patient_data", True) for r in self.runs)


def load_sweeps(folders: list[Path]) -> list[Sweep]:
    folders = [Path(f) for f in folders]
    labels = _unique_labels(folders)
    sweeps = []
    for folder, label in zip(folders, labels):
        runs = [Run(run_dir, record) for run_dir, record in store.iter_complete_runs(folder)]
        sweeps.append(Sweep(folder, label, sorted(runs, key=lambda r: (r.epsilon, r.seed))))
    empty = [str(s.folder) for s in sweeps if not s.runs]
    if empty:
        raise ConfigError(f"no complete runs in {', '.join(empty)}; run a sweep there first")
    return sweeps


def _unique_labels(folders: list[Path]) -> list[str]:
    """Folder names, with their parent prepended where two sweeps share a name (and a number if still equal)."""
    names = [f.resolve().name for f in folders]
    labels = [f"{f.resolve().parent.name}/{n}" if names.count(n) > 1 else n for f, n in zip(folders, names)]
    return [f"{label} ({labels[:i].count(label) + 1})" if labels.count(label) > 1 else label
            for i, label in enumerate(labels)]


# ============================================================================= tidy frames
def _rero(attack: dict) -> float:
    """ReRo@η of one reconstruction attack: the share of images past η by PSNR (benchmark/record.py)."""
    return float(attack["rero"]["psnr"]) if attack.get("rero") else math.nan


def _recon_value(run: Run, *path: str) -> float:
    node = run.reconstruction
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return math.nan
        node = node[key]
    return float(node)


# The run columns the headline table and the ε figures read: the sweep table's own columns
# (benchmark/record.py computes them once), under the names the report uses.
RUN_COLUMNS = {
    "epsilon_spent": "epsilon_spent", "sigma": "sigma", "delta": "delta", "test_accuracy": "test_accuracy",
    "test_auroc": "test_auroc", "mia_best_auc": "mia_best_auc", "mia_best_tpr_low": "mia_best_tpr_at_0.1%fpr",
    "mia_epsilon_lb": "mia_best_epsilon_lb", "epsilon_ceiling": "mia_best_epsilon_ceiling",
    "audit_epsilon_lb": "audit_epsilon_lb", "recon_best_rero": "recon_best_rero", "rero_bound_train": "rero_bound_train",
    "prior_aware_success": "prior_aware_success", "prior_aware_chance": "prior_aware_chance",
    "rero_bound_prior": "rero_bound_prior", "epsilon_lb_max": "epsilon_lb_max",
}


def run_frame(sweep: Sweep) -> pd.DataFrame:
    """One row per run: ε, seed and every :data:`RUN_COLUMNS` column of its summary (NaN where it lacks one)."""
    rows = [{"sweep": sweep.label, "epsilon": r.epsilon, "seed": r.seed,
             **{name: float(r.summary.get(column, math.nan)) for name, column in RUN_COLUMNS.items()}} for r in sweep.runs]
    return pd.DataFrame(rows)


def membership_frame(sweep: Sweep) -> pd.DataFrame:
    """One row per (run, membership attack), with its CIs and ROC curve."""
    rows = []
    for r in sweep.runs:
        for key, m in r.membership.items():
            rows.append({
                "sweep": sweep.label, "epsilon": r.epsilon, "seed": r.seed, "key": key, "attack": attack_label(key),
                "auc": m["auc"], "auc_lo": m["auc_ci"][0], "auc_hi": m["auc_ci"][1],
                "fpr_levels": m["fpr_levels"], "tpr_at_fpr": m["tpr_at_fpr"], "tpr_at_fpr_ci": m["tpr_at_fpr_ci"],
                "fpr_low": m["fpr_levels"][0], "tpr_low": m["tpr_at_fpr"][0],
                "epsilon_lb": m["empirical_epsilon"]["epsilon_lb"],
                "epsilon_ceiling": m["empirical_epsilon"].get("epsilon_ceiling", math.nan),
                "confidence": m.get("confidence", 0.95),
                "fpr": m["roc_curve"]["fpr"], "tpr": m["roc_curve"]["tpr"],
                "delta": float(r.summary["delta"]), "epsilon_spent": float(r.summary["epsilon_spent"]),
            })
    return pd.DataFrame(rows)


def reconstruction_frame(sweep: Sweep) -> pd.DataFrame:
    """One row per (run, reconstruction attack)."""
    rows = []
    for r in sweep.runs:
        for key, a in ((r.reconstruction or {}).get("attacks") or {}).items():
            rows.append({
                "sweep": sweep.label, "epsilon": r.epsilon, "seed": r.seed, "key": key, "attack": attack_label(key),
                "rero_best": _rero(a), "shares": a.get("rero") or {}, "eta": a.get("eta") or {},
                **{m: a.get(m, math.nan) for m in ("psnr_mean", "psnr_max", "ssim_mean", "ssim_max", "mse_mean", "ncc_mean")},
            })
    return pd.DataFrame(rows)


# ============================================================================= beats chance
@dataclass(frozen=True)
class Finding:
    """One attack result that beats chance: which attack, and the numbers that show it."""

    attack: str
    text: str


def _membership_evidence(run: Run) -> Iterator[Finding]:
    for key, m in run.membership.items():
        name, level = attack_label(key), fmt_percent(m.get("confidence", 0.95))
        lo, hi = m["auc_ci"]
        if lo > 0.5:
            yield Finding(name, f"AUC {fmt_ci(m['auc'], lo, hi)} ({level} CI) lies above 0.5")
        for fpr, tpr, (lo, hi) in zip(m["fpr_levels"], m["tpr_at_fpr"], m["tpr_at_fpr_ci"]):
            if lo > fpr:
                yield Finding(name, f"TPR at {fmt_percent(fpr)} FPR {fmt_ci(tpr, lo, hi)} ({level} CI) lies above {fpr:g}")
        e = m["empirical_epsilon"]
        if e["epsilon_lb"] > 0:
            yield Finding(name, f"empirical ε lower bound {fmt(e['epsilon_lb'])} > 0 "
                                f"(at confidence 1 − {e.get('alpha', math.nan):g})")


def _audit_evidence(run: Run) -> Iterator[Finding]:
    if run.audit and run.audit["epsilon_lb"] > 0:
        a = run.audit
        yield Finding(attack_label("audit"), f"ε lower bound {fmt(a['epsilon_lb'])} > 0 ({a.get('v')} of {a.get('r')} "
                                             f"guesses correct, confidence 1 − {a.get('alpha', math.nan):g})")


def _prior_aware_evidence(run: Run) -> Iterator[Finding]:
    p = (run.reconstruction or {}).get("prior_aware")
    if p and p["ci_low"] > p["chance"]:
        yield Finding(attack_label("prior_aware"), f"success {fmt_ci(p['success_rate'], p['ci_low'], p['ci_high'])} "
                                                   f"lies above chance {fmt(p['chance'])}")


def _reconstruction_evidence(run: Run) -> Iterator[Finding]:
    for key, a in ((run.reconstruction or {}).get("attacks") or {}).items():
        for metric, share in (a.get("rero") or {}).items():
            if share > 0:
                eta = (a.get("eta") or {}).get(metric, math.nan)
                yield Finding(attack_label(key), f"{fmt(share)} of the images reconstructed past η = {eta:g} ({metric.upper()})")


CHANCE_RULES: tuple[Callable[[Run], Iterator[Finding]], ...] = (
    _membership_evidence, _audit_evidence, _prior_aware_evidence, _reconstruction_evidence,
)
UNIT_OF_PRIVACY_TEXT = (
    "The unit of privacy is one training image, not one patient: DP-SGD bounds what any attacker can learn about "
    "one image. MedMNIST's splits are not made by patient, so a patient with k images in the training set is "
    "protected only at about k·ε (group privacy). The guarantee also assumes that the randomness of Poisson "
    "sampling and of the noise stays secret: seeded runs are reproducible from their seed, which the record "
    "holds (see 'randomness' under Run metadata)."
)
CHANCE_RULE_TEXT = (
    "An attack counts as beating chance when its confidence interval excludes chance: a membership attack's "
    "AUC interval lies above 0.5, or its TPR interval at an FPR level lies above that level; or an empirical "
    "or one-run-audit ε lower bound (already a one-sided confidence bound) is above 0; or the prior-aware "
    "attack's success interval lies above its chance 1/n; or a reconstruction attack reconstructs any image "
    "past its threshold η (ReRo share > 0). A budget counts as safe only if no attack beats chance in any of "
    "its runs (seeds)."
)


def chance_tests(run: Run) -> int:
    """How many intervals :data:`CHANCE_RULES` look at in one run (each one a chance of a false alarm)."""
    recon = run.reconstruction or {}
    return (sum(2 + len(m["fpr_levels"]) for m in run.membership.values()) + bool(run.audit)
            + bool(recon.get("prior_aware")) + sum(len(a.get("rero") or {}) for a in (recon.get("attacks") or {}).values()))


def chance_evidence(run: Run) -> list[Finding]:
    return [finding for rule in CHANCE_RULES for finding in rule(run)]


def evidence_by_budget(sweep: Sweep) -> dict[float, list[str]]:
    """For each ε, every attack result that beats chance, as 'attack, seed s: numbers'."""
    return {eps: [f"{f.attack}, seed {r.seed}: {f.text}" for r in sweep.at(eps) for f in chance_evidence(r)]
            for eps in sweep.budgets}


# ============================================================================= summary in words
def _mean(runs: pd.DataFrame, eps: float, column: str) -> float:
    values = runs.loc[runs["epsilon"] == eps, column].dropna()
    return float(values.mean()) if len(values) else math.nan


def _seeds_note(runs: pd.DataFrame, eps: float) -> str:
    n = int((runs["epsilon"] == eps).sum())
    return f" (means over {n} seeds)" if n > 1 else ""


def utility_cost_sentence(runs: pd.DataFrame, eps: float) -> str:
    if not np.isinf(runs["epsilon"]).any():
        return "The sweep has no non-private run (ε = ∞), so the utility cost cannot be stated."
    acc, ref = _mean(runs, eps, "test_accuracy"), _mean(runs, math.inf, "test_accuracy")
    auroc, ref_auroc = _mean(runs, eps, "test_auroc"), _mean(runs, math.inf, "test_auroc")
    return (f"There, test accuracy is {fmt(acc)}{_seeds_note(runs, eps)} against {fmt(ref)} without DP"
            f"{_seeds_note(runs, math.inf)}, a change of {fmt_signed(acc - ref)}; test AUROC is {fmt(auroc)} "
            f"against {fmt(ref_auroc)} ({fmt_signed(auroc - ref_auroc)}).")


ATTACK_RESULT_COLUMNS = ("mia_best_auc", "audit_epsilon_lb", "prior_aware_success", "recon_best_rero")


def attacked(runs: pd.DataFrame) -> bool:
    """Whether any attack ran in these runs (a sweep with attack=[] measures utility only)."""
    return any(c in runs and runs[c].notna().any() for c in ATTACK_RESULT_COLUMNS)


def summary_sentences(sweep: Sweep, runs: pd.DataFrame, evidence: dict[float, list[str]]) -> list[str]:
    """The summary in words: each sentence chosen by a test on the recorded numbers."""
    budgets = sweep.budgets
    seeds = sorted({r.seed for r in sweep.runs})
    out = [f"{len(sweep.runs)} run(s) at {len(budgets)} budget(s) (ε = {', '.join(epsilon_label(e) for e in budgets)}), "
           f"{'seed' if len(seeds) == 1 else 'seeds'} {', '.join(map(str, seeds))}."]
    safe = [e for e in budgets if not evidence[e]]
    if not attacked(runs):
        out.append("No attack was run in this sweep (attack=[]), so it measures utility and states the DP bounds "
                   "only; it says nothing about what an attacker can do at any budget.")
        private = [e for e in budgets if not math.isinf(e)]
        if private:
            out.append(f"The smallest budget is ε = {epsilon_label(min(private))}. " + utility_cost_sentence(runs, min(private)))
        return out
    if not safe:
        where = "At every budget, down to the smallest," if len(budgets) > 1 else "At the only budget,"
        out.append(f"{where} ε = {epsilon_label(budgets[0])}, at least one attack beat chance within its confidence "
                   f"interval ({len(evidence[budgets[0]])} result(s) there; listed below the headline table).")
    elif math.isinf(max(safe)) and len(safe) == len(budgets):
        out.append("No attack beat chance within its confidence interval at any budget, not even against the "
                   "non-private model (ε = ∞): the attacks run here found no measurable leakage in this sweep, "
                   "so it cannot tell the budgets apart by risk.")
    elif math.isinf(max(safe)):
        out.append("No attack beat chance within its confidence interval against the non-private model (ε = ∞), "
                   "yet attacks did at smaller budgets (listed below the headline table): the attacks' power varies "
                   "between runs, so no budget threshold can be read from this sweep.")
    else:
        top = max(safe)
        out.append(f"The largest budget at which no attack beat chance within its confidence interval is "
                   f"ε = {epsilon_label(top)} (noise multiplier σ = {fmt(_mean(runs, top, 'sigma'))}, accountant ε "
                   f"spent {fmt(_mean(runs, top, 'epsilon_spent'))}).")
        out.append(utility_cost_sentence(runs, top))
        below = [e for e in budgets if e < top and evidence[e]]
        if below:
            out.append(f"At the smaller budget(s) ε = {', '.join(epsilon_label(e) for e in below)}, however, an attack "
                       "did beat chance, so the budgets below this one are not all safe by the same test.")
    out += _multiplicity_sentences(sweep, evidence)
    out += _nonprivate_sentences(sweep, runs, evidence) + _consistency_sentences(runs) + _bound_sentences(sweep)
    return out


def _multiplicity_sentences(sweep: Sweep, evidence: dict[float, list[str]]) -> list[str]:
    """Many intervals per run: a lone finding just past chance may be luck; say how many were looked at."""
    tests = max(chance_tests(r) for r in sweep.runs)
    if tests < 2 or not any(evidence.values()):
        return []
    return [f"Each run is judged by up to {tests} intervals and tests (every attack and criterion), so an isolated "
            "result just past chance can be luck; the list below the headline table gives each result's numbers."]


def _nonprivate_sentences(sweep: Sweep, runs: pd.DataFrame, evidence: dict[float, list[str]]) -> list[str]:
    if math.inf not in evidence or not evidence[math.inf]:
        return []
    found = evidence[math.inf]
    best_auc, best_tpr = _mean(runs, math.inf, "mia_best_auc"), _mean(runs, math.inf, "mia_best_tpr_low")
    membership = (f" The strongest membership attack reached AUC {fmt(best_auc)} and TPR {fmt(best_tpr)} at "
                  f"{fmt_percent(_lowest_fpr_level(sweep))} FPR." if not math.isnan(best_auc) else "")
    return [f"Without DP (ε = ∞), {len(found)} attack result(s) beat chance, for example {found[0]}.{membership}"]


def _bound_sentences(sweep: Sweep) -> list[str]:
    """No attack may beat its theoretical bound: the prior-aware attack's interval must reach its ReRo bound."""
    above = [(r, p) for r in sweep.runs if (p := (r.reconstruction or {}).get("prior_aware")) and p["ci_low"] > p["bound"]]
    if not above:
        return []
    cases = ", ".join(f"ε = {epsilon_label(r.epsilon)} seed {r.seed} (success interval from {fmt(p['ci_low'])} > "
                      f"bound {fmt(p['bound'])})" for r, p in above)
    return [f"Warning: the prior-aware attack succeeds more often than its ReRo bound allows at {cases}; the bound, "
            "the accounting or the attack simulation is wrong and these results should not be trusted."]


def _lowest_fpr_level(sweep: Sweep) -> float:
    levels = [m["fpr_levels"][0] for r in sweep.runs for m in r.membership.values()]
    return min(levels) if levels else math.nan


def _consistency_sentences(runs: pd.DataFrame) -> list[str]:
    """DP requires every honest empirical lower bound to stay below the accountant's ε."""
    private = runs[np.isfinite(runs["epsilon_spent"])]
    checked = private[private["epsilon_lb_max"].notna()]
    if checked.empty:
        return []
    above = checked[checked["epsilon_lb_max"] > checked["epsilon_spent"]]
    if above.empty:
        return ["No empirical ε lower bound exceeds the accountant's ε, as DP requires (a check at level α in total: "
                "each bound of a run is computed at α divided by their number)."]
    cases = ", ".join(f"ε = {epsilon_label(r.epsilon)} seed {r.seed} (lower bound "
                      f"{fmt(r.epsilon_lb_max)} > {fmt(r.epsilon_spent)})"
                      for r in above.itertuples())
    return [f"Warning: an empirical ε lower bound exceeds the accountant's ε at {cases}; DP forbids this, so the "
            "training, the accounting or the attack evaluation is wrong and these results should not be trusted."]


# ============================================================================= tables
def cell(values: pd.Series) -> str:
    """Mean ± standard deviation over seeds; a single value where all seeds agree (or one seed)."""
    values = values.dropna().astype(float)
    if values.empty:
        return "–"
    if len(values) == 1 or values.nunique() == 1:
        return fmt(values.iloc[0])
    return f"{fmt(values.mean())} ± {fmt(values.std(ddof=1))}"


@dataclass(frozen=True)
class Column:
    header: str
    render: Callable[[pd.DataFrame, float, pd.DataFrame], str]  # (runs at ε, ε, all runs) -> cell
    needs: str | None = None  # the run column that must have a value somewhere, else the column is left out


def _value(column: str) -> Callable[[pd.DataFrame, float, pd.DataFrame], str]:
    return lambda at, eps, runs: cell(at[column])


def _change(column: str) -> Callable[[pd.DataFrame, float, pd.DataFrame], str]:
    def render(at: pd.DataFrame, eps: float, runs: pd.DataFrame) -> str:
        if math.isinf(eps):
            return "reference"
        return fmt_signed(float(at[column].mean()) - _mean(runs, math.inf, column))
    return render


def headline_columns(sweep: Sweep, runs: pd.DataFrame, evidence: dict[float, list[str]]) -> list[Column]:
    tpr = f"best TPR at {fmt_percent(_lowest_fpr_level(sweep))} FPR" if sweep_has_membership(sweep) else "best TPR"
    columns = [
        Column("ε", lambda at, eps, runs: epsilon_label(eps)),
        Column("accountant ε spent", _value("epsilon_spent")),
        Column("σ", _value("sigma")),
        Column("test accuracy", _value("test_accuracy")),
        Column("test AUROC", _value("test_auroc")),
    ]
    if np.isinf(runs["epsilon"]).any():
        columns += [Column("Δ accuracy vs non-private", _change("test_accuracy")),
                    Column("Δ AUROC vs non-private", _change("test_auroc"))]
    columns += [
        Column("best membership AUC", _value("mia_best_auc"), "mia_best_auc"),
        Column(tpr, _value("mia_best_tpr_low"), "mia_best_tpr_low"),
        Column("empirical ε lower bound (membership)", _value("mia_epsilon_lb"), "mia_epsilon_lb"),
        Column("ε lower bound (one-run audit)", _value("audit_epsilon_lb"), "audit_epsilon_lb"),
        Column("reconstruction ReRo@η (best attack)", _value("recon_best_rero"), "recon_best_rero"),
        Column("ReRo bound γ (κ = 1/N)", _value("rero_bound_train"), "rero_bound_train"),
        Column("prior-aware success", _value("prior_aware_success"), "prior_aware_success"),
        Column("ReRo bound γ (κ = 1/n)", _value("rero_bound_prior"), "rero_bound_prior"),
    ]
    if attacked(runs):  # a verdict needs an attack: a sweep without one has no "no" to give
        columns.append(Column("attack beats chance",
                              lambda at, eps, runs: f"yes ({len(evidence[eps])})" if evidence[eps] else "no"))
    columns.append(Column("runs", lambda at, eps, runs: str(len(at))))
    return [c for c in columns if c.needs is None or runs[c.needs].notna().any()]


def sweep_has_membership(sweep: Sweep) -> bool:
    return any(r.membership for r in sweep.runs)


def headline_table(sweep: Sweep, runs: pd.DataFrame, evidence: dict[float, list[str]]) -> tuple[list[str], list[list[str]]]:
    """One row per budget: utility, change from non-private, attack success beside the bounds."""
    columns = headline_columns(sweep, runs, evidence)
    rows = [[c.render(runs[runs["epsilon"] == eps], eps, runs) for c in columns] for eps in sweep.budgets]
    return [c.header for c in columns], rows


def membership_detail_table(attacks: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    levels = attacks["fpr_levels"].iloc[0]
    header = ["ε", "seed", "attack", "AUC [CI]"] + [f"TPR at {fmt_percent(f)} FPR [CI]" for f in levels] + [
        "empirical ε lower bound", "largest possible lower bound"]
    rows = []
    for a in attacks.itertuples():
        tprs = [fmt_ci(t, lo, hi) for t, (lo, hi) in zip(a.tpr_at_fpr, a.tpr_at_fpr_ci)]
        rows.append([epsilon_label(a.epsilon), str(a.seed), a.attack, fmt_ci(a.auc, a.auc_lo, a.auc_hi), *tprs,
                     fmt(a.epsilon_lb), fmt(a.epsilon_ceiling)])
    return header, rows


def comparison_table(sweeps: list[Sweep], frames: dict[str, pd.DataFrame],
                     evidence: dict[str, dict[float, list[str]]]) -> tuple[list[str], list[list[str]]]:
    """Side by side: one row per budget, accuracy, best membership AUC and the chance verdict per sweep."""
    header = ["ε"]
    for s in sweeps:
        header += [f"{s.label}: test accuracy", f"{s.label}: best membership AUC", f"{s.label}: attack beats chance"]
    rows = []
    for eps in sorted({e for s in sweeps for e in s.budgets}):
        row = [epsilon_label(eps)]
        for s in sweeps:
            at = frames[s.label][frames[s.label]["epsilon"] == eps]
            found = evidence[s.label].get(eps) if attacked(frames[s.label]) else None
            verdict = "–" if found is None else (f"yes ({len(found)})" if found else "no")
            row += [cell(at["test_accuracy"]), cell(at["mia_best_auc"]), verdict]
        rows.append(row)
    return header, rows


# ============================================================================= per-sample risk
def per_sample_auc(scores: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per training image: P(score when in > score when out) over the pool's target models (ties ½).

    In the LiRA protocol each image is in the training set of about half of the M models. For one
    image, the Mann–Whitney AUC of its M scores (in vs out) measures how well the attack singles
    it out: 0.5 = no signal, 1 = every 'in' score above every 'out' score. ``p_perfect`` is the
    chance of AUC = 1 without any leakage, 1/C(n_in + n_out, n_in).
    """
    value = scores.pivot(index="target_model", columns="sample", values=column)
    member = scores.pivot(index="target_model", columns="sample", values="member").astype(bool).to_numpy()
    ranks = rankdata(value.to_numpy(float), axis=0)
    n_in = member.sum(0)
    n_out = member.shape[0] - n_in
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * member).sum(0) - n_in * (n_in + 1) / 2) / (n_in * n_out)
        gap = (np.where(member, value, 0).sum(0) / n_in) - (np.where(~member, value, 0).sum(0) / n_out)
    labels = scores.groupby("sample")["label"].first().reindex(value.columns)
    return pd.DataFrame({"sample": value.columns.to_numpy(), "label": labels.to_numpy(), "auc": auc, "gap": gap,
                         "n_in": n_in, "n_out": n_out, "p_perfect": 1.0 / comb(n_in + n_out, n_in)})


def strongest_attack(attacks: pd.DataFrame) -> str | None:
    """The membership attack with the highest mean AUC over the sweep's runs."""
    return None if attacks.empty else str(attacks.groupby("key")["auc"].mean().idxmax())


def sample_risk(sweep: Sweep, key: str) -> pd.DataFrame:
    """Per-sample AUC of attack ``key`` for every run that saved its scores (one row per run and image)."""
    parts = []
    for r in sweep.runs:
        path = r.folder / "membership_scores.parquet"
        if not path.is_file():
            continue
        scores = pd.read_parquet(path)
        if f"score_{key}" not in scores:
            continue
        part = per_sample_auc(scores, f"score_{key}")
        names = r.record["dataset"]["class_names"]
        part["class_name"] = [names[int(i)] if 0 <= int(i) < len(names) else str(i) for i in part["label"]]
        parts.append(part.assign(sweep=sweep.label, epsilon=r.epsilon, seed=r.seed))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def class_frame(sweep: Sweep, risk: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, class): test accuracy of the class and mean per-sample membership AUC."""
    rows = []
    for r in sweep.runs:
        mine = risk[(risk["epsilon"] == r.epsilon) & (risk["seed"] == r.seed)] if len(risk) else risk
        mean_risk = mine.groupby("class_name")["auc"].mean() if len(mine) else pd.Series(dtype=float)
        for name, accuracy in r.record["utility"].get("test_per_class_accuracy", {}).items():
            rows.append({"sweep": sweep.label, "epsilon": r.epsilon, "seed": r.seed, "class_name": name,
                         "accuracy": float(accuracy), "risk": float(mean_risk.get(name, math.nan))})
    return pd.DataFrame(rows)


def per_class_table(classes: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = ["ε", "class", "test accuracy", "mean per-sample membership AUC"]
    rows = []
    for (eps, name), group in classes.groupby(["epsilon", "class_name"], sort=True):
        rows.append([epsilon_label(eps), str(name), cell(group["accuracy"]), cell(group["risk"])])
    return header, rows


def vulnerable_table(risk: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The most exposed training images per budget (mean per-sample AUC over seeds, then score gap)."""
    header = ["ε", "rank", "training image (index in the training split)", "class", "per-sample AUC",
              "mean score gap (in − out)", "times in / out"]
    rows = []
    for eps, group in risk.groupby("epsilon", sort=True):
        per_image = group.groupby(["sample", "class_name"]).agg(
            auc=("auc", "mean"), gap=("gap", "mean"), n_in=("n_in", "sum"), n_out=("n_out", "sum")).reset_index()
        top = per_image.sort_values(["auc", "gap"], ascending=False).head(TOP_VULNERABLE)
        rows += [[epsilon_label(eps), str(rank), str(t.sample), str(t.class_name), fmt(t.auc), fmt(t.gap),
                  f"{t.n_in} / {t.n_out}"] for rank, t in enumerate(top.itertuples(), 1)]
    return header, rows


def perfect_auc_table(risk: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Images with per-sample AUC 1 in a run, observed against the number expected with no leakage."""
    header = ["ε", "images with per-sample AUC = 1 (mean per run)", "expected by chance alone", "images per run"]
    rows = []
    for eps, group in risk.groupby("epsilon", sort=True):
        per_run = group.groupby("seed").agg(observed=("auc", lambda a: float((a == 1).sum())),
                                            expected=("p_perfect", "sum"), n=("sample", "count"))
        rows.append([epsilon_label(eps), f"{per_run['observed'].mean():.1f}", f"{per_run['expected'].mean():.1f}",
                     _join(sorted(set(per_run["n"])))])
    return header, rows


# ============================================================================= reconstruction
def reconstruction_tables(sweep: Sweep, recon: pd.DataFrame) -> list[tuple[str, list[str], list[list[str]]]]:
    """(caption, header, rows) of the reconstruction attacks, the prior-aware attack and the ReRo bounds."""
    out = []
    if len(recon):
        header = ["ε", "seed", "attack", "PSNR mean / max (dB)", "SSIM mean / max", "MSE mean", "NCC mean",
                  "ReRo@η PSNR", "ReRo@η SSIM", "η (PSNR dB, SSIM)"]
        rows = [[epsilon_label(a.epsilon), str(a.seed), a.attack, f"{fmt(a.psnr_mean)} / {fmt(a.psnr_max)}",
                 f"{fmt(a.ssim_mean)} / {fmt(a.ssim_max)}", fmt(a.mse_mean), fmt(a.ncc_mean),
                 fmt(a.shares.get("psnr")), fmt(a.shares.get("ssim")),
                 f"{a.eta.get('psnr', math.nan):g} dB, {a.eta.get('ssim', math.nan):g}"]
                for a in recon.itertuples()]
        out.append(("Reconstruction attacks (each true image matched to its best reconstruction)", header, rows))
    rows = []
    for r in sweep.runs:
        p = (r.reconstruction or {}).get("prior_aware")
        if p:
            rows.append([epsilon_label(r.epsilon), str(r.seed), fmt_ci(p["success_rate"], p["ci_low"], p["ci_high"]),
                         fmt(p["chance"]), fmt(_recon_value(r, "bounds", "rero_prior", "gamma")),
                         str(p.get("n_candidates", "–")), str(p.get("trials", "–"))])
    if rows:
        header = ["ε", "seed", "prior-aware success [CI]", "chance 1/n", "ReRo bound γ (κ = 1/n)", "candidates n", "trials"]
        out.append(("Prior-aware attack against its bound", header, rows))
    bounds = [(prior, key) for prior in ("rero_train", "rero_prior") for key in ("kappa", "gamma")] + [("rero_step", "gamma")]
    rows = []
    for eps in sweep.budgets:
        at = sweep.at(eps)
        values = [pd.Series([_recon_value(r, "bounds", prior, key) for r in at]) for prior, key in bounds]
        if any(v.notna().any() for v in values):
            rows.append([epsilon_label(eps), cell(pd.Series([float(r.summary["sigma"]) for r in at])), *map(cell, values)])
    if rows:
        header = ["ε", "σ", "κ = 1/N (training set)", "ReRo bound γ, whole run", "κ = 1/n (candidates)",
                  "ReRo bound γ, whole run", "ReRo bound γ, one client step (κ = 1/N)"]
        out.append(("ReRo bounds (Hayes, Mahloujifar & Balle 2023): the most any reconstruction attack can succeed, "
                    "for a prior whose most likely outcome has probability κ. 'Whole run': an adversary who sees "
                    "all T subsampled steps (the threat model of the prior-aware attack and of the DP guarantee). "
                    "'One client step': a single unsubsampled update (q = 1, T = 1, γ = Φ(Φ⁻¹(κ) + 1/σ)), the "
                    "threat model of gradient inversion and of the imprint attack, which attack one client's update", header, rows))
    return out


def grid_file(run: Run, attack: dict) -> Path | None:
    """The run's grid PNG, only if it lies inside the run folder and is a PNG (paths come from data)."""
    rel = attack.get("grid")
    if not rel:
        return None
    folder = run.folder.resolve()
    path = (folder / str(rel)).resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        return None
    with open(path, "rb") as f:
        return path if f.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE else None


def safe_file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", str(text))[:80]


# ============================================================================= document
def md_escape(text: str) -> str:
    """Markdown text from data: no HTML, no links, no table breaks."""
    text = html.escape(str(text), quote=False).replace("|", "\\|").replace("](", "]\\(")
    return re.sub(r"\s*\n\s*", " ", text)


class Document:
    """Accumulates the report as Markdown and HTML in parallel; every text argument is plain text."""

    def __init__(self, title: str, out_dir: Path):
        self.title = title
        self.out_dir = out_dir
        self.fig_dir = out_dir / "figures"
        self.md: list[str] = []
        self.html: list[str] = []
        self.toc: list[tuple[str, str]] = []
        self.figures: list[Path] = []

    def heading(self, text: str, level: int = 2) -> None:
        anchor = f"s{len(self.toc) + 1}-" + safe_file_part(text.lower())[:40]
        if level == 2:
            self.toc.append((anchor, text))
        self.md += [f"{'#' * level} {md_escape(text)}", ""]
        self.html.append(f'<h{level} id="{html.escape(anchor)}">{html.escape(text)}</h{level}>')

    def paragraph(self, text: str, css: str | None = None) -> None:
        self.md += [("> **Note:** " if css == "note" else "") + md_escape(text), ""]
        cls = f' class="{css}"' if css else ""
        self.html.append(f"<p{cls}>{html.escape(text)}</p>")

    def note(self, text: str) -> None:
        self.paragraph(text, "note")

    def table(self, header: list[str], rows: list[list[str]], collapsed: str | None = None) -> None:
        md_rows = ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in [header]]
        md_rows += ["|" + "---|" * len(header)] + ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in rows]
        self.md += ([f"*{md_escape(collapsed)}*", ""] if collapsed else []) + md_rows + [""]
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        table = f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
        self.html.append(f"<details><summary>{html.escape(collapsed)}</summary>{table}</details>" if collapsed else table)

    def figure(self, path: Path, caption: str) -> None:
        """A PNG under figures/: linked from Markdown, embedded as a data URI in HTML."""
        self.figures.append(path)
        rel = path.relative_to(self.out_dir).as_posix()
        alt = md_escape(caption).replace("[", "\\[").replace("]", "\\]")
        self.md += [f"![{alt}]({rel})", "", f"*{md_escape(caption)}*", ""]
        data = base64.b64encode(path.read_bytes()).decode()
        self.html.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def write(self, generated: str) -> list[Path]:
        md_path, html_path = self.out_dir / "report.md", self.out_dir / "report.html"
        md = [f"# {md_escape(self.title)}", "", md_escape(generated), ""] + self.md
        store.atomic_write_text(md_path, "\n".join(md).rstrip() + "\n")
        toc = "".join(f'<li><a href="#{html.escape(a)}">{html.escape(t)}</a></li>' for a, t in self.toc)
        page = (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1><p class='meta'>{html.escape(generated)}</p>"
            f"<nav><ol>{toc}</ol></nav>" + "\n".join(self.html) + "</body></html>"
        )
        store.atomic_write_text(html_path, page)
        return [html_path, md_path]


# The page needs nothing from outside: images are data URIs, styles inline, no scripts at all.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.6em 0;font-size:0.8em}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3;vertical-align:bottom}td:first-child,th:first-child{text-align:left}.scroll{overflow-x:auto}
figure{margin:1.5em 0}img{max-width:100%}figcaption{font-size:0.85em;color:#555}
.note{background:#fff8e1;padding:0.6em;border-left:4px solid #f0c000}.meta{color:#666;font-size:0.9em}
details{margin:0.6em 0}summary{cursor:pointer;color:#235}nav ol{columns:2;font-size:0.9em}
"""


# ============================================================================= sections
@dataclass
class Context:
    """What the sections of one report share: the sweeps and the frames derived from their records."""

    sweeps: list[Sweep]
    doc: Document
    show_reconstructions: bool
    runs: dict[str, pd.DataFrame]
    membership: pd.DataFrame
    reconstruction: pd.DataFrame
    evidence: dict[str, dict[float, list[str]]]

    @property
    def several(self) -> bool:
        return len(self.sweeps) > 1

    def sub(self, sweep: Sweep) -> None:
        """A level-3 heading naming the sweep, only when the report compares several."""
        if self.several:
            self.doc.heading(sweep.label, 3)

    def fig_path(self, name: str) -> Path:
        return self.doc.fig_dir / name

    @property
    def all_runs(self) -> pd.DataFrame:
        return pd.concat(self.runs.values(), ignore_index=True)


def section_summary(ctx: Context) -> None:
    ctx.doc.heading("Summary")
    for sweep in ctx.sweeps:
        ctx.sub(sweep)
        for sentence in summary_sentences(sweep, ctx.runs[sweep.label], ctx.evidence[sweep.label]):
            ctx.doc.paragraph(sentence)
    ctx.doc.paragraph(CHANCE_RULE_TEXT)
    ctx.doc.paragraph(UNIT_OF_PRIVACY_TEXT)
    if ctx.several:
        ctx.doc.heading("Side by side", 3)
        ctx.doc.table(*comparison_table(ctx.sweeps, ctx.runs, ctx.evidence))


def section_headline(ctx: Context) -> None:
    ctx.doc.heading("Headline table")
    ctx.doc.paragraph("One row per privacy budget. Values are means ± standard deviation over seeds where a budget has "
                      "several runs; 'best' is the strongest attack of each run. Δ is the change of the mean from the "
                      "non-private runs. The accountant's ε is an upper bound on what any attack can show; the "
                      "empirical ε values are lower bounds proven by the attacks at the stated confidence.")
    for sweep in ctx.sweeps:
        ctx.sub(sweep)
        ctx.doc.table(*headline_table(sweep, ctx.runs[sweep.label], ctx.evidence[sweep.label]))
        found = [f"ε = {epsilon_label(eps)}, {text}" for eps, texts in ctx.evidence[sweep.label].items() for text in texts]
        if found:
            ctx.doc.table(["attack results that beat chance"], [[t] for t in found],
                          collapsed=f"{len(found)} attack result(s) that beat chance (the evidence behind the column 'attack beats chance')")


def section_utility(ctx: Context) -> None:
    ctx.doc.heading("Utility")
    path = figures.utility(ctx.runs, ctx.fig_path("utility_vs_epsilon.png"))
    ctx.doc.figure(path, "Test accuracy and AUROC against ε (log axis); the non-private runs (ε = ∞) are shown apart "
                         "on the right. Error bars: standard deviation over seeds.")


def section_membership(ctx: Context) -> None:
    ctx.doc.heading("Membership inference")
    if ctx.membership.empty:
        ctx.doc.paragraph("No membership inference attack was recorded in these runs.")
        return
    protocols = {json.dumps({k: _protocol(r).get(k) for k in ("num_models", "pool", "queries")}, default=str)
                 for s in ctx.sweeps for r in s.runs if r.membership}
    for p in sorted(protocols):
        proto = json.loads(p)
        ctx.doc.paragraph(
            f"Protocol (LiRA evaluation, Carlini et al. 2022): {proto.get('num_models', '–')} models trained with the "
            f"target's recipe on random halves of the {proto.get('pool', 'sample pool')}; each in turn is the target "
            f"and the others are its shadow/reference models; queries: {', '.join(map(str, proto.get('queries', [])))}. "
            "These numbers describe the half-size pool models (same σ, q, T and C as the target, hence the same ε, "
            "but about half its training images), not the reported target model itself.")
    ctx.doc.paragraph(
        "Intervals resample target models and images as crossed clusters (Owen's two-way bootstrap): an atypical "
        "image is exposed against every model, and one model may overfit more than another, so the M·N scores are "
        "not independent. RMIA compares each candidate with population images that no model trained on (a held-out "
        "split), never with the target's own non-members.")
    ctx.doc.figure(figures.membership(ctx.membership, ctx.fig_path("membership_vs_epsilon.png")),
                   "Membership attack success against ε: AUC (left, dashed: chance) and TPR at the lowest FPR level "
                   "(right, symlog axis) with the DP bound TPR ≤ e^ε·FPR + δ evaluated at each ε.")
    ctx.doc.figure(figures.roc_curves(ctx.membership, ctx.fig_path("roc_curves.png")),
                   "ROC curves on log-log axes, one panel per budget (every seed drawn), with chance (dashed) and the "
                   "DP bound TPR ≤ min(1, e^ε·FPR + δ) at the accountant's ε (red; none for ε = ∞).")
    for sweep in ctx.sweeps:
        part = ctx.membership[ctx.membership["sweep"] == sweep.label]
        if len(part):
            ctx.doc.table(*membership_detail_table(part),
                          collapsed=f"Every membership attack of every run{f' ({sweep.label})' if ctx.several else ''}: "
                                    "AUC and TPR with their bootstrap confidence intervals")


def section_empirical(ctx: Context) -> None:
    ctx.doc.heading("Empirical ε vs the accountant's ε")
    runs = ctx.all_runs
    if runs[["mia_epsilon_lb", "audit_epsilon_lb"]].isna().all().all():
        ctx.doc.paragraph("No empirical ε lower bound was recorded in these runs.")
        return
    ctx.doc.figure(figures.empirical_epsilon(runs, ctx.fig_path("empirical_vs_accountant_epsilon.png")),
                   "The accountant's ε (black, an upper bound) beside the lower bounds proven by the membership attacks "
                   "(best attack) and by the one-run audit. Lower bounds far below the accountant's ε mean the attacks "
                   "are weaker than the worst case, not that the guarantee is loose.")
    ctx.doc.paragraph(EMPIRICAL_EPSILON_TEXT)
    for sweep in ctx.sweeps:
        ctx.sub(sweep)
        for sentence in _consistency_sentences(ctx.runs[sweep.label]):
            ctx.doc.paragraph(sentence)


EMPIRICAL_EPSILON_TEXT = (
    "What the lower bounds assume. Membership: one pool model is held out as the evaluation target; its images are "
    "the canaries of a one-run audit (Steinke, Nasr & Jagielski 2023), each in its training set independently with "
    "probability ½; the attack scores them using the other models as shadows, and the numbers of 'member' and "
    "'non-member' guesses are chosen on the other targets, scored without it. That analysis holds for any "
    "(ε, δ)-DP training of the evaluation target and needs no independence between images. One-run audit: the "
    "same analysis on canaries inserted into one extra training run. Each of a run's lower bounds is computed at "
    "level α divided by their number, so the largest of them, which is checked against the accountant below, is "
    "wrong with probability at most α in total."
)


def section_reconstruction(ctx: Context) -> None:
    ctx.doc.heading("Reconstruction")
    if not any(r.reconstruction for s in ctx.sweeps for r in s.runs):
        ctx.doc.paragraph("No reconstruction attack or bound was recorded in these runs.")
        return
    for sweep in ctx.sweeps:
        ctx.sub(sweep)
        settings = {json.dumps(r.reconstruction.get("setting"), sort_keys=True, default=str)
                    for r in sweep.runs if r.reconstruction and r.reconstruction.get("setting")}
        for setting in sorted(settings):
            ctx.doc.paragraph("Setting of the reconstruction attacks: " + _pairs(json.loads(setting)) + ".")
        recon = ctx.reconstruction[ctx.reconstruction["sweep"] == sweep.label] if len(ctx.reconstruction) else ctx.reconstruction
        for caption, header, rows in reconstruction_tables(sweep, recon):
            ctx.doc.paragraph(caption + ":")
            ctx.doc.table(header, rows)
    ctx.doc.figure(figures.reconstruction(ctx.all_runs, ctx.reconstruction, ctx.fig_path("reconstruction_vs_epsilon.png")),
                   "Reconstruction success against ε: the share of images each attack reconstructs past η (ReRo@η, the "
                   "larger of the PSNR and SSIM criteria), the prior-aware attack's success with its chance 1/n, and the "
                   "ReRo bounds γ computed from each run's σ, q and T (red, black). Points: means over seeds; error bars: "
                   "standard deviation over seeds (the tables above give each run's confidence interval).")
    if len(ctx.reconstruction):
        section_grids(ctx)


def section_grids(ctx: Context) -> None:
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
            for key, attack in ((run.reconstruction or {}).get("attacks") or {}).items():
                source = grid_file(run, attack)
                if source is None:
                    continue
                name = f"recon_{sweep.label}_eps={store.format_epsilon(eps)}_seed={run.seed}_{key}.png"
                target = ctx.fig_path(safe_file_part(name))
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                ctx.doc.figure(target, f"{sweep.label}, ε = {epsilon_label(eps)}, seed {run.seed}: {attack_label(key)} "
                                       f"reconstructions as recorded by the run (PSNR mean {fmt(attack.get('psnr_mean'))} dB).")
                shown += 1
        if not shown:
            ctx.doc.paragraph(f"{sweep.label}: no reconstruction grid was recorded.")


def section_risk(ctx: Context) -> None:
    ctx.doc.heading("Per-class risk and the most vulnerable images")
    classes, risks = [], []
    for sweep in ctx.sweeps:
        key = strongest_attack(ctx.membership[ctx.membership["sweep"] == sweep.label] if len(ctx.membership) else ctx.membership)
        risk = sample_risk(sweep, key) if key else pd.DataFrame()
        classes.append(class_frame(sweep, risk))
        risks.append((sweep, key, risk))
    ctx.doc.paragraph(
        "Membership risk of one training image is its per-sample AUC: over the models of the membership protocol, "
        "the probability that the attack scores the image higher when it was in the model's training set than when "
        "it was out (ties count ½). 0.5 means the attack cannot tell; 1 means every 'in' score is above every 'out' "
        "score. With only a few models per image, perfect scores also happen by chance; the expected number is shown.")
    all_classes = pd.concat(classes, ignore_index=True)
    if len(all_classes):
        ctx.doc.figure(figures.per_class(all_classes, ctx.fig_path("per_class_risk.png")),
                       "Per-class test accuracy (left) and mean per-sample membership AUC (right) against ε, using each "
                       "sweep's strongest membership attack; error bars: standard deviation over seeds.")
    for (sweep, key, risk), frame in zip(risks, classes):
        ctx.sub(sweep)
        if len(frame):
            ctx.doc.table(*per_class_table(frame))
        if risk.empty:
            ctx.doc.paragraph("No per-sample membership scores were recorded, so there is no per-image risk.")
            continue
        ctx.doc.paragraph(f"Attack used: {attack_label(key)}, the strongest by mean AUC over the sweep.")
        ctx.doc.table(*perfect_auc_table(risk))
        ctx.doc.table(*vulnerable_table(risk), collapsed=f"The {TOP_VULNERABLE} most exposed training images per budget "
                                                         "(per-sample AUC averaged over seeds)")


def threat_models(run: Run) -> dict[str, str]:
    """What each attack of one run saw, in plain words, as recorded beside its results."""
    recon = run.reconstruction or {}
    found = {attack_label(k): v for k, v in run.membership_threats.items()}
    found.update({attack_label(k): a.get("threat_model") for k, a in run.attacks.items() if registry.ATTACKS[k].family != "membership"})
    return {k: v for k, v in found.items() if v}


def section_threat_models(ctx: Context) -> None:
    ctx.doc.heading("Threat models")
    seen = {k: v for sweep in ctx.sweeps for run in sweep.runs for k, v in threat_models(run).items()}
    if seen:
        ctx.doc.table(["attack", "what the attacker sees"], [[k, v] for k, v in seen.items()])
    else:
        ctx.doc.paragraph("No attack was recorded in these runs.")


def section_metadata(ctx: Context) -> None:
    ctx.doc.heading("Run metadata")
    header = ["", *(s.label for s in ctx.sweeps)]
    rows = [[f.name, *(f.describe(s) for s in ctx.sweeps)] for f in METADATA]
    ctx.doc.table(header, [r for r in rows if any(c != "–" for c in r[1:])])


def _join(values) -> str:
    return ", ".join(str(v) for v in values)


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
        return "; ".join(f"{v} (ε = {_join(epsilon_label(e) for e in sorted(set(eps)))})" for v, eps in groups.items())


def _ds(r: Run) -> dict:
    return r.record["dataset"]


def _train(r: Run) -> dict:
    return r.record.get("train") or {}


def _privacy(r: Run) -> dict:
    return r.record.get("privacy") or {}


def _env(r: Run) -> dict:
    return r.record.get("environment") or {}


def _protocol(r: Run) -> dict:
    return (r.record.get("protocols") or {}).get("membership") or {}


def _pairs(mapping: dict | None) -> str:
    return _join(f"{str(k).replace('_', ' ')} {v}" for k, v in (mapping or {}).items())


def _run_time(sweep: Sweep) -> str:
    total = sum(float(r.record.get("wall_time_s", 0.0)) for r in sweep.runs)
    return f"{total / 60:.1f} min over {len(sweep.runs)} runs"


def _completed(sweep: Sweep) -> str:
    stamps = [t for t in (r.completed_at for r in sweep.runs) if t is not None]
    if not stamps:
        return "–"
    first, last = (time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) for t in (min(stamps), max(stamps)))
    return first if first == last else f"{first} to {last}"


VERSIONED = ("medprivbench", "python", "torch", "opacus", "monai", "numpy")
METADATA: tuple[MetaField, ...] = (
    MetaField("dataset", lambda r: _ds(r).get("name")),
    MetaField("source", lambda r: _ds(r).get("source")),
    MetaField("licence", lambda r: _ds(r).get("licence")),
    MetaField("citation", lambda r: _ds(r).get("citation")),
    MetaField("real patient data", lambda r: "yes" if _ds(r).get("real_patient_data", True) else "no (synthetic or public)"),
    MetaField("classes", lambda r: _join(_ds(r).get("class_names", []))),
    MetaField("images (channels × height × width)",
              lambda r: f"{_ds(r)['n_channels']} × {' × '.join(map(str, _ds(r)['image_size']))}"),
    MetaField("train / validation / test images",
              lambda r: f"{_ds(r).get('n_train')} / {_ds(r).get('n_val', '–')} / {_ds(r).get('n_test')}"),
    MetaField("duplicates dropped", lambda r: _pairs(_ds(r).get("duplicates_dropped"))),
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
    MetaField("membership protocol", lambda r: f"{_protocol(r)['num_models']} models, queries "
                                               f"{_join(_protocol(r).get('queries', []))}" if _protocol(r) else None),
    MetaField("one-run audit", lambda r: f"{r.audit['m']} {r.audit.get('canary', '')} canaries, {r.audit['k_plus']} + "
                                         f"{r.audit['k_minus']} guesses" if r.audit else None),
    MetaField("reconstruction setting", lambda r: _pairs(r.reconstruction.get("setting")) if r.reconstruction else None),
    MetaField("seeds", per_sweep=lambda s: _join(sorted({r.seed for r in s.runs}))),
    MetaField("versions", lambda r: _join(f"{k} {_env(r)[k]}" for k in VERSIONED if _env(r).get(k))),
    MetaField("platform", lambda r: _env(r).get("platform")),
    MetaField("device / threads", lambda r: f"{_env(r)['device']} / {_env(r)['threads']}"),
    MetaField("run time", per_sweep=_run_time),
    MetaField("completed", per_sweep=_completed),
    MetaField("results folder", per_sweep=lambda s: str(s.folder)),
)


SECTIONS: tuple[Callable[[Context], None], ...] = (
    section_summary, section_headline, section_utility, section_membership, section_empirical,
    section_reconstruction, section_risk, section_threat_models, section_metadata,
)


# ============================================================================= entry points
def report_options(report_cfg) -> dict:
    """build_report keyword arguments from a sweep config's ``report`` section (e.g. report.show_reconstructions=true)."""
    options = dict(report_cfg or {})
    unknown = sorted(set(options) - {"show_reconstructions"})
    if unknown:
        raise ConfigError(f"report.{unknown[0]} is not a report option; the only one is report.show_reconstructions=true|false")
    value = options.get("show_reconstructions", False)
    if not isinstance(value, bool):
        raise ConfigError(f"report.show_reconstructions={value!r} must be true or false")
    return {"show_reconstructions": value}


def _clear_previous_figures(fig_dir: Path) -> None:
    """Remove the figures the last build wrote (reconstruction grids of patient data must not linger)."""
    listing = fig_dir / FIGURE_LIST
    if not listing.is_file():
        return
    for name in listing.read_text().split("\n"):
        path = fig_dir / name
        if name and path.parent == fig_dir and path.is_file():
            path.unlink()
    listing.unlink()


def build_report(folders: list[Path], out_dir: Path | None = None, show_reconstructions: bool = False) -> list[Path]:
    """Write report.html and report.md for one sweep folder (in place) or several (a comparison).

    ``show_reconstructions`` includes reconstructed images of real patient data; images of
    synthetic or public data are always shown.
    """
    sweeps = load_sweeps(list(folders))
    out_dir = Path(out_dir) if out_dir is not None else (sweeps[0].folder if len(sweeps) == 1 else Path("report-comparison"))
    out_dir.mkdir(parents=True, exist_ok=True)
    title = (f"medprivbench budget report: {sweeps[0].label}" if len(sweeps) == 1
             else "medprivbench budget comparison: " + " vs ".join(s.label for s in sweeps))
    doc = Document(title, out_dir)
    _clear_previous_figures(doc.fig_dir)
    runs = {s.label: run_frame(s) for s in sweeps}
    ctx = Context(
        sweeps=sweeps, doc=doc, show_reconstructions=bool(show_reconstructions), runs=runs,
        membership=pd.concat([membership_frame(s) for s in sweeps], ignore_index=True),
        reconstruction=pd.concat([reconstruction_frame(s) for s in sweeps], ignore_index=True),
        evidence={s.label: evidence_by_budget(s) for s in sweeps},
    )
    for section in SECTIONS:
        section(ctx)
    if doc.figures:
        store.atomic_write_text(doc.fig_dir / FIGURE_LIST, "\n".join(p.name for p in doc.figures) + "\n")
    generated = (f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} from "
                 f"{', '.join(str(s.folder) for s in sweeps)} ({sum(len(s.runs) for s in sweeps)} complete runs).")
    paths = doc.write(generated)
    log.info("report written to %s", ", ".join(map(str, paths)))
    return paths
