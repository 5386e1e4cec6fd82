"""Corrections to Opacus' per-sample-gradient samplers, registered through its public API.

Opacus 1.6's Conv2d sampler (``opacus/grad_sample/conv.py``, ``compute_conv_grad_sample``) unfolds
the layer's input with ``opacus.utils.tensor_utils.unfold2d``, which builds an ``as_strided`` view
whose H and W strides are hard-coded for an NCHW-contiguous tensor (``W_pad * dilation[0]``,
``dilation[1]``, ...). A channels-last activation (strides (H·W·C, 1, W·C, C)) is read wrongly:
the view walks the zero padding, so the per-sample gradient of the weight is zero (or garbage).

Channels-last activations are common: torch's convolutions (CPU and CUDA) keep the memory format
they infer from their input's strides, and a single-channel batch indexed from a NumPy array (the
datasets' ``train_x[keep]``) has strides (H·W, 1, W, 1), which torch reads as channels-last; every
convolution output after the first is then channels-last. Under ``hooks`` every Conv2d weight but
the stem's got a zero clipped gradient; under ``ghost`` those layers were left out of the
per-sample norms, so clipping under-counted them (sensitivity above C). ``ew`` and ``functorch``
differentiate through torch's own kernels and are unaffected; Conv1d and Conv3d use stride-aware
unfolds and are unaffected.

The correction hands Opacus' sampler an NCHW-contiguous copy of a channels-last activation (a no-op
for a contiguous one). ``register_grad_sampler`` installs it for ``hooks`` and ``ghost`` alike.
"""

from __future__ import annotations

import torch
import torch.nn as nn

_installed = False


def conv2d_grad_sample(layer: nn.Conv2d, activations: list[torch.Tensor], backprops: torch.Tensor) -> dict:
    """Opacus' Conv2d per-sample gradients, on an NCHW-contiguous copy of the input."""
    from opacus.grad_sample.conv import compute_conv_grad_sample

    activations = [activations[0].contiguous(memory_format=torch.contiguous_format), *activations[1:]]
    return compute_conv_grad_sample(layer, activations, backprops)


def install() -> None:
    """Register the corrected samplers with Opacus (once per process; imports Opacus)."""
    global _installed
    if _installed:
        return
    import opacus.grad_sample.conv  # noqa: F401  (Opacus' own registration runs first, ours replaces it)
    from opacus.grad_sample import register_grad_sampler

    register_grad_sampler(nn.Conv2d)(conv2d_grad_sample)
    _installed = True
