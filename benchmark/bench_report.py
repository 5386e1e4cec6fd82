"""What ``medprivbench-bench`` prints: the measurements of benchmark/bench.py as tables.

The results are the JSON that each phase's subprocess returned (``--out`` writes the same
structure), so this module reads plain dictionaries and measures nothing.
"""

from __future__ import annotations


def print_report(results: dict, phases: tuple[str, ...]) -> None:
    """The measurements of every phase that ran, as tables; then each failed phase (in ``phases``
    order) with its last error lines."""
    env = results["environment"]
    print(f"medprivbench-bench on {env['device']} ({env['cpu_count']} CPU cores, torch threads {env['threads']}), "
          f"torch {env['torch']}, opacus {env['opacus']}")
    if "privacy-cost" in results:
        print("\nCost of privacy: DP-SGD step / non-private step (same batch, same machine, one run)")
        print(f"  {'model':<12} {'input':<5} {'engine':<10} {'batch':>5} {'non-private ms':>15} {'DP ms':>9} {'ratio':>6}  correct  default")
        for r in results["privacy-cost"]:
            if "error" in r:
                print(f"  {r['model']:<12} {r.get('input', '28²'):<5} {r['mode']:<10} {r['batch']:>5}   not supported: {r['error']}")
                continue
            print(f"  {r['model']:<12} {r.get('input', '28²'):<5} {r['mode']:<10} {r['batch']:>5} {r['nonprivate_step_ms']:>15.1f} {r['dp_step_ms']:>9.1f} "
                  f"{r['ratio']:>6.2f}  {'yes' if r['correct'] else 'NO':<7}  {'<-' if r['default'] else ''}")
    if "training" in results and "error" not in results["training"]:
        t = results["training"]
        print(f"\nTraining ({t['model']}, {t['grad_sample_mode']}, DP ε=8, N={t['n_train']}, {t['epochs']} epochs)")
        print(f"  target: {t['target_samples_per_s']:.0f} samples/s ({t['target_train_s']:.1f} s)")
        for stage in t["shadow_stages"]:
            same = "identical" if stage["max_abs_logit_difference_to_1_worker"] == 0 else \
                f"max |Δ logit| {stage['max_abs_logit_difference_to_1_worker']:.2g} vs 1 worker"
            print(f"  shadow stage, {stage['workers']} worker(s): {t['shadow_models']} models in {stage['seconds']:.1f} s, "
                  f"{stage['samples_per_s']:.0f} samples/s ({same})")
        print(f"  peak memory: {t['peak_rss_mb']:.0f} MB RSS, largest worker {t['peak_worker_rss_mb']:.0f} MB"
              + (f", {t['peak_cuda_mb']:.0f} MB CUDA" if "peak_cuda_mb" in t else ""))
    if "attacks" in results and "error" not in results["attacks"]:
        a = results["attacks"]
        b = a["rero_bound"]
        print(f"\nReRo bound at κ = 1/N = {b['kappa']:.2e} (σ={b['sigma']:.3f}, q={b['sample_rate']:.4f}, T={b['steps']}): "
              f"γ = {b['gamma']:.4f} in {b['seconds']:.3f} s")
        if "gradient_inversion" in a:
            g = a["gradient_inversion"]
            print(f"Gradient inversion ({g['model']}, B={g['batch_size']}): {g['iterations_per_s']:.1f} iterations/s")
        if "imprint" in a:
            print(f"Imprint attack (B={a['imprint']['batch_size']}, {a['imprint']['n_bins']} bins): {a['imprint']['seconds']:.2f} s")
    if "sweeps" in results:
        for label, s in results["sweeps"].items():
            status = "ok" if s["returncode"] == 0 else f"FAILED ({s.get('error')})"
            print(f"\n{label.replace('_', ' ')}: {s['seconds']:.0f} s ({s['seconds'] / 60:.1f} min), {status}; results in {s['results']}")
    for phase in phases:
        if isinstance(results.get(phase), dict) and "error" in results[phase]:
            print(f"\n{phase}: failed: {results[phase]['error']}")
