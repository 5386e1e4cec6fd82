"""What ``medprivbench-audit`` writes and prints: audit.json, audit.md, roc_<attack>.csv, scores.parquet.

The audit's record (one dict) holds the attacks' metrics under ``attacks`` (each with its ROC
curve, which goes to its own CSV), the shared counts and levels, the attacks that could not run,
and, where reference models were trained, how (``references``, with the caveat about the recipe).
Everything is rendered in memory (the run and its report in the staging folder) and published in
one all-or-nothing step (benchmark/store.py ``publish_folder``); the folder may replace only an
earlier audit's.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pandas as pd

from .audit_references import AUDIT_ATTACKS, RECIPE_NOTE, describe_recipe
from .errors import ConfigError
from .recipe import DPRecipe
from .store import publish_folder

# the files of an audit folder (roc.csv: the single curve of earlier versions), and its folders:
# the run, the table and the report that medprivbench-report reads (benchmark/audit_record.py)
AUDIT_FILE = re.compile(r"audit\.json|audit\.md|scores\.parquet|roc(_\w+)?\.csv|table\.(csv|parquet)|report\.(html|md)")
AUDIT_FOLDERS = ("runs", "figures")


def check_out_folder(out: Path) -> None:
    """``--out`` can take the audit: absent, empty, or an earlier audit's folder (which it replaces)."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the audit's files")
    others = sorted(p.name for p in out.iterdir() if not (p.is_file() and AUDIT_FILE.fullmatch(p.name))
                    and not (p.is_dir() and p.name in AUDIT_FOLDERS))
    if others:
        raise ConfigError(f"--out {out} holds other files ({', '.join(others[:3])}{', …' if len(others) > 3 else ''}); "
                          "give a new folder, or an earlier audit's (it is replaced)")
    if any(out.iterdir()) and not (out / "audit.json").is_file():  # a sweep's folder looks alike: never replace one
        raise ConfigError(f"--out {out} holds files but no audit.json, so it is not an earlier audit's folder; "
                          "give a new folder")


def write_audit(out: Path, record: dict, scores: pd.DataFrame, run: tuple[dict, dict] | None = None) -> Path:
    """Publish the audit folder: audit.json, audit.md, one ROC curve per attack, the per-record scores,
    and with ``run`` (a run record and its configuration, benchmark/audit_record.py) the run, its
    table and its report, all in one all-or-nothing step."""
    from .audit_record import write_run_folder

    record = {**record, "attacks": {name: dict(result) for name, result in record["attacks"].items()}}
    files = {}
    for name, result in record["attacks"].items():
        curve = result.pop("roc_curve")
        rows = "\n".join(f"{f!r},{t!r}" for f, t in zip(curve["fpr"], curve["tpr"]))
        files[f"roc_{name}.csv"] = ("fpr,tpr\n" + rows + "\n").encode()
    files["audit.json"] = json.dumps(record, indent=2).encode()
    files["audit.md"] = markdown(record).encode()
    buffer = io.BytesIO()
    scores.to_parquet(buffer, index=False)
    files["scores.parquet"] = buffer.getvalue()
    fill = None if run is None else (lambda folder: write_run_folder(folder, *run, final=Path(out)))
    return publish_folder(out, files, fill=fill)


def _interval(value: float, ci) -> str:
    return f"{value:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci is not None else f"{value:.4f}"


def markdown(record: dict) -> str:
    """audit.md: one row per attack, then the inputs and, with reference models, how they were made."""
    rows = []
    for name, result in record["attacks"].items():
        ci = result["tpr_at_fpr_ci"] or [None, None]
        epsilon = (f"{result['epsilon_lb']:.4f} (δ = {result['delta']:g}, confidence {1 - result['alpha']:g})"
                   if "epsilon_lb" in result else "—")
        rows.append(f"| {AUDIT_ATTACKS[name].label} | {_interval(result['auc'], result['auc_ci'])} | "
                    f"{_interval(result['tpr_at_0.1%fpr'], ci[0])} | {_interval(result['tpr_at_1%fpr'], ci[1])} | {epsilon} |")
    facts = [("members / non-members", f"{record['n_members']} / {record['n_nonmembers']}"),
             ("input", str(record.get("source", "")).replace("|", "\\|"))]
    facts += [(f"not run: {name}", reason) for name, reason in record.get("not_run", {}).items()]
    text = ("# Membership audit\n\nA lower bound on what the model leaks about membership; chance is AUC 0.5 and ε 0. "
            f"Intervals are bootstrap intervals over samples at confidence {1 - record['alpha']:g}, each on its own.\n\n"
            "| attack | AUC | TPR at 0.1 % FPR | TPR at 1 % FPR | empirical ε lower bound |\n|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n\n| quantity | value |\n|---|---|\n"
            + "\n".join(f"| {k} | {v} |" for k, v in facts) + "\n")
    if "references" in record:
        text += _references_markdown(record["references"])
    return text


def _references_markdown(references: dict) -> str:
    recipe = DPRecipe(**references["recipe"])
    accuracy = references["test_accuracy"]
    lines = [f"{references['count']} reference models of {references['model']['name']} (width "
             f"{references['model']['width']}), trained on {references['trained_on']}, with the stated recipe: "
             f"{describe_recipe(recipe, references['train'])} (overrides: {' '.join(references['recipe_overrides']) or 'none'}).",
             f"RMIA's population: {references['population'] or 'none'}; queries: {', '.join(references['queries'])}."]
    if accuracy and references.get("target_test_accuracy") is not None:
        lines.append(f"Test accuracy: the audited model {references['target_test_accuracy']:.3f}, the reference models "
                     f"{sum(accuracy) / len(accuracy):.3f} on average (a large gap suggests a recipe far from the real one).")
    lines += [f"**{RECIPE_NOTE}**", f"Threat model: {references['threat_model']}."]
    if references.get("tail") is not None:
        from .audit_tail import tail_lines
        from .families.tail import TailResult

        lines += ["Privacy tail over the reference models (the recipe's per-record risk, not the audited model's; "
                  "shares of the candidates with Clopper–Pearson intervals, chance from membership permuted across "
                  "the references):", *(f"- {line}" for line in tail_lines(TailResult.from_record(references["tail"])))]
    return "\n## Reference models\n\n" + "\n\n".join(lines) + "\n"


def summary_lines(record: dict, out: Path, delta: float, alpha: float) -> list[str]:
    """One printed line per attack (the loss attack's as before), then the references' caveat."""
    lines = []
    for name, r in record["attacks"].items():
        head = f"AUC {r['auc']:.3f} [{r['auc_ci'][0]:.3f}, {r['auc_ci'][1]:.3f}], TPR at 0.1% FPR {r['tpr_at_0.1%fpr']:.4f}"
        if name == "loss":
            lines.append(f"loss attack on {r['n_members']} members and {r['n_nonmembers']} non-members: {head}, "
                         f"empirical ε ≥ {r['epsilon_lb']:.3f} (δ = {delta:g}, confidence {1 - alpha:g}) -> {out}")
        else:
            lines.append(f"{AUDIT_ATTACKS[name].title} with {record['references']['count']} reference models: {head} -> {out}")
    tail = (record.get("references") or {}).get("tail")
    if tail is not None:
        from .audit_tail import tail_lines
        from .families.tail import TailResult

        lines += [f"privacy tail over the {tail['n_models']} reference models: {line}"
                  for line in tail_lines(TailResult.from_record(tail))]
    if "references" in record:
        lines.append("reference models follow the stated recipe, not the model's own; a recipe far from the real one "
                     f"weakens LiRA and RMIA (see {Path(out) / 'audit.md'})")
    return lines
