"""The engine: CLI entry points, one experiment (train → attack → record), DP training, sweep/resume, results store, report."""
