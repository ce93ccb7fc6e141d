"""Weight files written by the reference CUT code (taesungp/contrastive-unpaired-translation)
read into this project's networks.

The reference saves the same tensors under other names:

- every key starts with ``module.``: it wraps networks in DataParallel, even on a CPU;
- its anti-aliasing filters are buffers named ``filt``. Downsampling keeps the same blur here,
  as the buffer ``kernel``; upsampling here is the equal bilinear interpolation (see
  models/networks/layers.py) and keeps no buffer. Each filter's values are checked against
  this network's before it is renamed or dropped: a different filter would change the maths;
- netF's projection heads are ``mlp_0``, ``mlp_1``... where this PatchSampleF has ``mlps.0``...

Files this project wrote pass through unchanged.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from models.networks.layers import Downsample, Upsample
from util.checkpoint import CheckpointError

_PREFIX = "module."
_MLP = re.compile(r"^mlp_(\d+)\.")
_FILTER = ".filt"


def is_reference_format(state: dict[str, torch.Tensor]) -> bool:
    """True for a state dict with any of the reference's key names (see the module docstring)."""
    return any(key.startswith(_PREFIX) or key.endswith(_FILTER) or _MLP.match(key) for key in state)


def convert_state_dict(state: dict[str, torch.Tensor], net: nn.Module, *, source: str) -> dict[str, torch.Tensor]:
    """The state dict `net.load_state_dict` expects, from one in the reference's format (or ours).

    `source` names the file in errors. Raises CheckpointError when an anti-aliasing filter's values
    differ from this network's (the reference code was modified; its outputs cannot be reproduced).
    Keys that match no layer here are kept, so load_state_dict names them as an architecture mismatch.
    """
    if not is_reference_format(state):
        return state
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = _MLP.sub(r"mlps.\1.", key.removeprefix(_PREFIX))
        if key.endswith(_FILTER):
            owner = key[: -len(_FILTER)]
            try:
                layer = net.get_submodule(owner)
            except AttributeError:
                layer = None
            if isinstance(layer, Downsample):
                _check_filter(value, layer.kernel, key=key, source=source)
                converted[f"{owner}.kernel"] = value
                continue
            if isinstance(layer, Upsample):
                _check_filter(value, Upsample.transposed_filter().expand(value.shape[0], 1, 4, 4), key=key,
                              source=source)  # its channel count: checked by the convolutions around it
                continue  # bilinear interpolation here: nothing to load
        converted[key] = value
    return converted


def _check_filter(found: torch.Tensor, expected: torch.Tensor, *, key: str, source: str) -> None:
    """Raise unless `found` holds the same blur as `expected`. Another channel count is left for
    load_state_dict to report, with the other size mismatches (an option differs from training)."""
    if found.shape[0] != expected.shape[0]:
        return
    expected = expected.to(found.device, found.dtype)
    if found.shape != expected.shape or not torch.allclose(found, expected, rtol=0.0, atol=1e-6):
        raise CheckpointError(f"{source}: the anti-aliasing filter {key} is not the binomial blur this network "
                              "uses: the file comes from modified reference code, whose outputs cannot be "
                              "reproduced here -- retrain, or use the code that wrote it")
