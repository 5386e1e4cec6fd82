"""Attack families (benchmark/families/base.py): membership, the privacy tail, audit, prior-aware, reconstruction.

Each built-in family is one module here, imported below so that static tools see every one; a new
family is one more module that registers itself with :func:`register_family` when imported (the
module of its attack imports it).
"""

from __future__ import annotations

from .base import (  # noqa: F401
    FAMILIES, AttackResult, Family, Finding, Structured, ordered, register_family, typed_dict, unregister_family,
)
from . import membership, tail, audit, prior_aware, reconstruction  # noqa: E402,F401  (the built-in families register)


def family(key: str) -> Family:
    if key not in FAMILIES:
        raise ValueError(f"family {key!r} is not registered; registered: {', '.join(FAMILIES)}")
    return FAMILIES[key]
