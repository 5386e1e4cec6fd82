"""Random streams: one per purpose and per model, derived from the run's seed.

DP-SGD's guarantee rests on randomness the adversary cannot predict: which examples each Poisson
batch holds, and the Gaussian noise. The threat models of this benchmark hand the adversary the
initial weights θ₀ (gradient inversion attacks the model at initialisation; the prior-aware
adversary knows every model state), so the stream that draws θ₀ must tell nothing about the
streams that draw the batches and the noise. Seeding them all with one integer does exactly the
opposite: the same Mersenne-Twister stream would first produce θ₀ and then the batch masks, and
anyone holding θ₀ could recompute which steps included an image, which removes the amplification
by subsampling that the accountant counts on.

So every stream here is keyed by (seed, role, model index, purpose) through
``numpy.random.SeedSequence``: its spawn key holds role, index and purpose, and its hash mixes them
with the seed into the stream's own 63-bit seed. No two keys give the same stream, a run stays
bit-reproducible on CPU, and θ₀ (the ``init`` stream) carries no information about the
``sampling`` or ``noise`` streams beyond the root seed itself.

The root seed is the run's ``seed`` setting and is written in the run record: reproducible runs are
private only while that seed stays secret. Runs whose models will be released should use
``privacy.secure_rng=true``, which draws sampling and noise from the operating system's
cryptographically secure generator instead (benchmark/secure_rng.py) and gives up reproducibility.

Roles: ``target`` (the reported model), ``pool`` (membership models, index m), ``audit`` (the
black-box audit's run), ``reference`` (``medprivbench-audit``'s reference models, index k) and one
role per attack (its name). Purposes: see :data:`PURPOSES`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

# What a stream is for. Training: ``init`` (initial weights), ``sampling`` (Poisson masks, or the
# shuffle of a non-private run), ``noise`` (DP-SGD's Gaussian noise), ``augmentation`` (random
# views). Protocols: ``membership`` (who is in which pool model), ``canaries`` (which canaries are
# included, and which images become canaries). Attacks: ``attack`` (the attack's own randomness:
# images chosen, restarts, bootstrap), ``client_noise`` (the simulated client's DP noise).
PURPOSES = ("init", "sampling", "noise", "augmentation", "membership", "canaries", "canary_noise", "attack", "client_noise", "statistics")
_MAX_SEED = 2**63


def _key(name: str) -> int:
    """A stable 32-bit number for a name (roles and purposes become parts of the spawn key)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def derive_seed(seed: int, purpose: str, role: str = "target", index: int = 0) -> int:
    """The 63-bit seed of stream (role, index, purpose) of a run with root ``seed``."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose={purpose!r}; expected one of {', '.join(PURPOSES)}")
    if not 0 <= int(seed) < _MAX_SEED:
        raise ValueError(f"seed={seed}; expected an integer in [0, 2**63)")
    sequence = np.random.SeedSequence(int(seed), spawn_key=(_key(role), int(index), _key(purpose)))
    return int(sequence.generate_state(1, np.uint64)[0]) % _MAX_SEED


@dataclass(frozen=True)
class Streams:
    """The streams of one model (``role``, ``index``) of a run with root ``seed``."""

    seed: int
    role: str = "target"
    index: int = 0

    def of(self, role: str, index: int = 0) -> Streams:
        """The streams of another model (or attack) of the same run."""
        return Streams(self.seed, role, index)

    def seed_for(self, purpose: str) -> int:
        return derive_seed(self.seed, purpose, self.role, self.index)

    def torch(self, purpose: str, device: torch.device | str = "cpu") -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self.seed_for(purpose))

    def numpy(self, purpose: str) -> np.random.Generator:
        return np.random.default_rng(self.seed_for(purpose))

    def key(self) -> str:
        return f"{self.role}[{self.index}]"

