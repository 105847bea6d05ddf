"""--early-stop: the stopping rule on synthetic loss curves, and one tiny run that stops."""
import math

import numpy as np
import pytest

from clipstyle_opt.config import StyleConfig
from clipstyle_opt.errors import ConfigError
from clipstyle_opt.training.stopping import EarlyStop, stop_step


def noisy(values, scale=0.002, seed=0):
    """``values`` times (1 + uniform noise of +-scale): the crop-to-crop noise of a real patch loss, relative."""
    rng = np.random.default_rng(seed)
    return [v * (1 + rng.uniform(-scale, scale)) for v in values]


def test_a_flat_loss_stops_after_the_patience():
    losses = noisy([0.8] * 200)
    step = stop_step(losses, patience=20)
    assert step is not None
    assert 20 < step <= 40  # the first step sets the best; a flat loss never beats it by 1 %


def test_a_falling_loss_is_not_stopped():
    # falls 2 % per 10 steps at its slowest (t = 300), more than 1 % per patience window
    falling = noisy([1.0 * math.exp(-t / 500) + 0.2 for t in range(300)])
    assert stop_step(falling, patience=20) is None


def test_a_loss_that_falls_then_flattens_stops_after_it_flattens():
    curve = noisy([math.exp(-t / 20) + 0.5 for t in range(100)] + [math.exp(-5) + 0.5] * 200)
    step = stop_step(curve, patience=25)
    assert step is not None
    assert 100 < step < 160


def test_noise_alone_is_not_an_improvement():
    # +-5 % noise on a flat loss: the moving average keeps it within the 1 % band
    losses = noisy([0.5] * 300, scale=0.05, seed=3)
    assert stop_step(losses, patience=30) is not None


def test_patience_counts_steps_without_improvement():
    rule = EarlyStop(patience=3)
    assert [rule.update(1.0) for _ in range(4)] == [False, False, False, True]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        EarlyStop(patience=0)
    with pytest.raises(ConfigError, match="early_stop must be >= 0"):
        StyleConfig(early_stop=-1)
    with pytest.raises(ConfigError, match=r"early_stop_delta must be in \[0, 1\)"):
        StyleConfig(early_stop_delta=1.0)


def test_a_run_whose_loss_does_not_move_stops_early(tiny_stylizer, photo):
    # lr ~ 0: the U-Net does not change, so the patch loss only wobbles with the crops
    result = tiny_stylizer.stylize(photo, "fire", steps=10, lr=1e-12, early_stop=2, early_stop_delta=0.5)
    assert result.extra == {"early_stopped": True, "steps_done": 3}
    assert len(result.history) == 3
    assert result.tensor.shape[-2:] == (64, 96)


def test_without_early_stop_every_step_runs(tiny_stylizer, photo):
    result = tiny_stylizer.stylize(photo, "fire", steps=5, lr=1e-12)
    assert len(result.history) == 5 and "early_stopped" not in result.extra
