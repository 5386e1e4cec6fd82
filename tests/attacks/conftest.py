"""Fixtures shared by the attack tests: the benchmark's default CNN and batches of synthetic images.

``make_cnn(seed=0)`` builds a fresh default CNN (1 channel, 2 classes, 28×28) with its weights drawn
from ``seed``; ``cnn`` is one such model shared by a test module. ``make_images(n, seed, size=28)``
returns ``n`` synthetic images as floats in [0, 1], shaped (n, 1, size, size), and their labels.
``one_thread`` runs a module on one CPU thread (``pytestmark = pytest.mark.usefixtures("one_thread")``):
attacks on small models are many tiny operations, several times faster on one thread of a shared machine.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from medprivbench.benchmark.config import ModelConfig
from medprivbench.benchmark.models import build_model
from medprivbench.datasets.synthetic import generate_images


def _synthetic_images(n: int, seed: int, size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = generate_images(n, seed=seed, size=size)
    return torch.tensor(x, dtype=torch.float32).unsqueeze(1) / 255.0, torch.tensor(y)


def _default_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(OmegaConf.structured(ModelConfig()), in_channels=1, n_classes=2, image_size=28)


@pytest.fixture(scope="session")
def make_images():
    return _synthetic_images


@pytest.fixture(scope="session")
def make_cnn():
    return _default_cnn


@pytest.fixture(scope="module")
def cnn(make_cnn) -> nn.Module:
    return make_cnn()


@pytest.fixture(scope="module")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
