import math

import pytest

from bip_dist.config.schema import OptimConfig
from bip_dist.optim import LrSchedule


def test_cosine_and_step():
    cos = LrSchedule(OptimConfig(lr=0.1, schedule="cosine"), 0.1, 10, 10)
    assert cos(0) == pytest.approx(0.1)
    assert cos(50) == pytest.approx(0.05)
    assert cos(99) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.99)))
    st = LrSchedule(OptimConfig(lr=0.1, schedule="step", milestones=(0.5, 0.75)), 0.1, 10, 10)
    assert [st(0), st(49), st(50), st(75)] == pytest.approx([0.1, 0.1, 0.01, 0.001])


def test_warmup():
    s = LrSchedule(OptimConfig(lr=1.0, schedule="constant", warmup_epochs=1), 1.0, 4, 3)
    assert [s(0), s(1), s(3), s(4)] == pytest.approx([0.25, 0.5, 1.0, 1.0])
