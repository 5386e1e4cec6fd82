"""Check every point of a sweep before the first job starts.

Hydra composes and validates one job at a time, and only when that job starts, so a bad value in
the last point of a sweep would surface after hours of training, and Hydra's own composition
errors span several lines. ``preflight(argv)`` expands the sweep exactly as Hydra's basic sweeper
does (the config's ``hydra.sweeper.params`` overridden by the command line), composes each
point with Hydra's compose API, loads each distinct dataset once, and runs the validation of
benchmark/validate.py. The first problem becomes one line: what is wrong and what would be valid.
"""

from __future__ import annotations

import itertools
import math
import re

from omegaconf import OmegaConf

from .errors import USER_ERRORS, ConfigError
from .paths import CONFIG_DIR

# Launchers that run the jobs on this machine (Slurm and Ray send them elsewhere).
LOCAL_LAUNCHERS = ("BasicLauncher", "JoblibLauncher", "LocalLauncher")
# Hydra flags that do not run jobs (help, printing the config, shell completion …).
INFO_FLAGS = ("-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "--info", "-i", "--shell-completion", "-sc",
              "--resolve", "-p", "--package", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")


def _condense(exc: Exception) -> str:
    """Hydra/OmegaConf composition errors as one line."""
    text = str(exc)
    cause = exc.__cause__
    full = text + ("\n" + str(cause) if cause is not None else "")
    m = re.search(r"Could not (?:find|load) '([^']+)/([^']+)'", full)
    if m:
        return f"{m.group(1)}={m.group(2)} is not valid; choose one of {', '.join(_group_options(m.group(1)))}"
    m = re.search(r"Value '([^']*)' (?:of type '\w+' )?could not be converted to (\w+)\s*\n\s*full_key: (\S+)", full)
    if m:
        kind = {"Float": "a number", "Integer": "a whole number", "Boolean": "true or false"}.get(m.group(2), m.group(2))
        return f"{m.group(3)}={m.group(1)!r} is not valid; it must be {kind}"
    m = re.search(r"Could not override '([^']+)'.*?Key '([^']+)' (?:is )?not in", full, re.S)
    if m:
        key = m.group(1).lstrip("+~")
        parts = key.split(".")
        for depth in range(len(parts)):  # the first component that does not exist
            parent = ".".join(parts[:depth])
            valid = _settings_of(parent)
            if parts[depth] not in valid:
                break
        where = f" of {parent}" if parent else ""
        bad = ".".join(parts[: depth + 1])
        if parts[0] == "attack" and depth >= 2 and parts[depth] in valid:
            return f"{key} configures attack {parts[1]!r}, which is not selected; add it to attack=[…]"
        return f"{bad} is not a setting{where}; valid: {', '.join(valid)}" if valid else f"{bad} is not a setting{where}"
    m = re.search(r"Missing mandatory value: (\S+)", full)
    if m:
        return f"{m.group(1)} is required; set it on the command line ({m.group(1)}=…)"
    first = next((line.strip() for line in full.splitlines() if line.strip()), type(exc).__name__)
    return first


def _settings_of(parent: str) -> list[str]:
    """The keys of ``parent`` in the typed schema (benchmark/config.py)."""
    from dataclasses import fields

    from .config import Config
    from .registry import load

    attacks = load()
    if parent == "attack":
        return sorted(attacks)
    if parent.startswith("attack.") and parent[7:] in attacks:
        return sorted(f.name for f in fields(attacks[parent[7:]].schema))
    node = OmegaConf.structured(Config)
    for part in [p for p in parent.split(".") if p]:
        node = node.get(part) if hasattr(node, "get") else None
        if node is None or not OmegaConf.is_dict(node):
            return []
    return sorted(node.keys())


def _group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _sweep_points(overrides: list[str], config_params: dict) -> list[list[str]]:
    """Every job's override list, like Hydra's BasicSweeper (command line wins over the config)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    cli = parser.parse_overrides(overrides)
    cli_keys = {o.get_key_element() for o in cli}
    params = parser.parse_overrides([f"{k}={v}" for k, v in config_params.items() if k not in cli_keys])
    axes = []
    for o in [*params, *cli]:
        if o.is_sweep_override():
            if o.is_discrete_sweep():
                values = list(o.sweep_string_iterator())
            else:
                raise ConfigError(f"{o.input_line}: only comma-separated sweeps are supported by the basic sweeper")
            axes.append([f"{o.get_key_element()}={v}" for v in values])
        else:
            axes.append([o.input_line])
    return [list(combo) for combo in itertools.product(*axes)] if axes else [[]]


_NUMBER = re.compile(r"[+-]?(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def check_overflow(overrides: list[str]) -> None:
    """A number written on the command line that overflows a float (``1e400``) would be read as ∞,
    which for privacy.epsilon means a run without DP: refuse it (``inf`` is the one spelling of ∞)."""
    for override in overrides:
        key, _, value = override.partition("=")
        for literal in re.split(r"[\[\],\s'\"]+", value):  # quoted numbers too: '1e400' becomes ∞ as well
            if _NUMBER.fullmatch(literal) and math.isinf(float(literal.replace("_", ""))):
                raise ConfigError(f"{key.lstrip('+~')}={literal} overflows to infinity; use a finite number"
                                  f"{' (or inf for a non-private run)' if key.endswith('epsilon') else ''}")


NONPRIVATE_SPELLINGS = ("inf", "+inf", ".inf")


def check_infinite_epsilon(cfg, point: list[str]) -> None:
    """ε = ∞ trains without DP: that must be what the user wrote (``inf``), never a value that only
    parses to infinity ('1e400' quoted, 'Infinity', …). Checked on the composed value, so every
    spelling that reaches the engine as ∞ is caught, whatever the parser did with the text."""
    if not math.isinf(float(cfg.privacy.epsilon)):
        return
    written = [o.partition("=")[2] for o in point if o.lstrip("+~").partition("=")[0] == "privacy.epsilon"]
    if written and written[-1].strip().strip("'\"").lower() not in NONPRIVATE_SPELLINGS:
        raise ConfigError(f"privacy.epsilon={written[-1]} is read as infinity, which trains without DP; write inf for a "
                          "non-private run, or a finite positive number")


# The embedded (generated) datasets and their spatial dimensions: sizes known without generating them.
EMBEDDED_DIMS = {"synthetic": 2, "synthetic3d": 3, "phantom2d": 2, "phantom3d": 3}


def _training_size(cfg, cache: dict) -> tuple[int, int]:
    """(training images, spatial dimensions) of the dataset ``cfg`` names; the embedded datasets'
    are known without generating them, others are loaded once per distinct dataset setting."""
    from medprivbench.datasets import load_dataset

    key = OmegaConf.to_yaml(cfg.dataset)
    if key not in cache:
        if cfg.dataset.name in EMBEDDED_DIMS:
            n = int(cfg.dataset.n_train)
            n = min(n, int(cfg.dataset.max_train)) if cfg.dataset.max_train is not None else n
            cache[key] = (n, EMBEDDED_DIMS[cfg.dataset.name])
        else:
            ds = load_dataset(cfg.dataset)  # a MedMNIST file whose dimensions contradict its name is refused there
            cache[key] = (ds.n_train, ds.info.spatial_dims)
    return cache[key]


def preflight(argv: list[str], config_dir: str) -> int:
    """Validate every sweep point; returns the number of points. Raises ConfigError (one line)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from .config import register_configs
    from .models import check_spatial_dims
    from .validate import validate_config, validate_with_data

    if any(a in INFO_FLAGS or a.split("=")[0] in INFO_FLAGS for a in argv):
        return 0
    overrides = [a for a in argv if not a.startswith("-")]
    job_overrides = [o for o in overrides if not re.match(r"^[+~]*hydra[./]", o)]
    check_overflow(overrides)  # on the text as typed: Hydra's parser has already turned 1e400 into inf
    register_configs()
    GlobalHydra.instance().clear()
    sizes: dict = {}
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3", job_name="preflight"):
            try:
                # single-valued overrides too: a preset (experiment=...) may set the sweep's own params
                fixed = [o for o in overrides if re.match(r"^[+~]*hydra[./]", o) or not re.search(r"[,(]", o)]
                base = compose("config", overrides=fixed, return_hydra_config=True)
                params = OmegaConf.to_container(base.hydra.sweeper.get("params") or {}, resolve=False)
                points = _sweep_points(job_overrides, params)
                jobs_run_here = str(base.hydra.launcher.get("_target_", "")).endswith(LOCAL_LAUNCHERS)
            except USER_ERRORS:
                raise
            except Exception as exc:
                raise ConfigError(_condense(exc)) from exc
            for point in points:
                try:
                    cfg = compose("config", overrides=point)
                    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
                except Exception as exc:
                    raise ConfigError(_condense(exc)) from exc
                check_infinite_epsilon(cfg, point)
                validate_config(cfg, jobs_run_here=jobs_run_here)
                n_train, spatial_dims = _training_size(cfg, sizes)
                check_spatial_dims(cfg.model.name, spatial_dims)
                validate_with_data(cfg, n_train)
    finally:
        GlobalHydra.instance().clear()
    return len(points)


def compose_point(overrides: list[str], config_dir: str = str(CONFIG_DIR)):
    """The configuration of one point composed from ``overrides`` with Hydra's compose API and
    resolved, as :func:`preflight` composes each point of a sweep (the value checks of
    benchmark/validate.py are the caller's). Raises ConfigError (one line)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from .config import register_configs

    check_overflow(overrides)
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3", job_name="compose"):
            cfg = compose("config", overrides=list(overrides))
            OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except USER_ERRORS:
        raise
    except Exception as exc:
        raise ConfigError(_condense(exc)) from exc
    finally:
        GlobalHydra.instance().clear()
    check_infinite_epsilon(cfg, list(overrides))
    return cfg
