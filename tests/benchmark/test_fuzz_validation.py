"""Fuzzing the boundary: random overrides of every setting, drawn from what users mistype.

The property (issue "every input gets one clear line"): preflight either accepts a point or
rejects it with one of the user errors, in one line. Anything else (a traceback from deep inside
Hydra, numpy or torch) is a defect. A fixed seed keeps CI deterministic and fast;
``MEDPRIVBENCH_FUZZ_CASES=2000`` runs a longer profile locally.
"""

from __future__ import annotations

import os
import random

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from medprivbench.benchmark.config import register_configs
from medprivbench.benchmark.errors import USER_ERRORS
from medprivbench.benchmark.paths import CONFIG_DIR
from medprivbench.benchmark.preflight import preflight

CASES = int(os.environ.get("MEDPRIVBENCH_FUZZ_CASES", "30"))
VALUES = [
    "1e400", "-1e400", "-1", "0", "-0.0", "nan", "inf", "-inf", "1e-320", "9223372036854775808", "-9223372036854775809",
    "0.5", "3", "true", "null", "''", "' '", "é中文", "x" * 300, "[1,2]", "[]", "{a:1}", "1.5e3", "0x10", "1_000",
]


def _leaves(node, prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, DictConfig):
            keys += _leaves(value, f"{path}.")
        elif not isinstance(value, ListConfig) or path.startswith("attack."):
            keys.append(path)
    return keys


@pytest.fixture(scope="module")
def settings() -> list[str]:
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config")
    GlobalHydra.instance().clear()
    return sorted(_leaves(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])))


def test_random_overrides_are_accepted_or_rejected_in_one_line(settings):
    rng = random.Random(20261130)
    failures = []
    for _ in range(CASES):
        key, value = rng.choice(settings), rng.choice(VALUES)
        try:
            preflight([f"{key}={value}"], str(CONFIG_DIR))
        except USER_ERRORS as exc:
            if "\n" in str(exc) or not str(exc).strip():
                failures.append(f"{key}={value}: message not one line: {str(exc)[:200]!r}")
        except Exception as exc:  # noqa: BLE001 - any other exception is the defect this test looks for
            failures.append(f"{key}={value}: {type(exc).__name__}: {str(exc)[:200]}")
    assert not failures, "\n".join(failures)
