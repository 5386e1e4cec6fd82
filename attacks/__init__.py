"""Attacks on trained models and the theoretical bounds they are compared with."""

# The stable entry points, importable from here (loaded on first use: importing the package stays cheap).
_EXPORTS = {
    "loss_attack": "membership", "score_all_targets": "membership", "lira_attack": "lira", "rmia_attack": "rmia",
    "roc_metrics": "mia_metrics", "per_sample_auc": "mia_metrics", "per_record_auc": "mia_metrics",
    "empirical_epsilon": "threshold_audit", "one_run_audit": "one_run_counting", "one_run_epsilon": "one_run_counting",
    "held_out_target_epsilon": "one_run_counting",
    "rero_bound": "bounds", "membership_tpr_bound": "bounds",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):  # noqa: ANN202 - PEP 562 lazy attribute
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
