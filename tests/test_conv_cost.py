"""bench/conv_cost.py: the profile's convolution share of a training iteration."""
from __future__ import annotations

from bench import conv_cost


def test_convolutions_are_a_share_of_a_training_iteration(toy_dataroot):
    result = conv_cost.conv_share(32, dataroot=str(toy_dataroot), iters=1)
    assert 0.2 < result["conv_share"] < 1  # a CUT iteration is mostly convolutions, not only
    assert result["sec_per_iter"] > 0

