"""`Stylizer.start`: a run advanced in pieces, stopped through the Ctrl-C path and continued, equals one
uninterrupted run of as many steps with the same seed, bit for bit on the CPU (same arithmetic in the same
order: the same crops from one generator, the same Adam moments, the same learning rates)."""
from __future__ import annotations

import torch

from clipstyle_opt.interrupts import GracefulStop


def _state(unet):
    return {k: v.detach().clone() for k, v in unet.state_dict().items()}


def test_stop_then_continue_equals_one_run(tiny_stylizer, photo):
    # lr decays every 2 steps: continuing must carry on the schedule, not restart it
    options = dict(steps=3, lr_decay_every=2, lr_decay=0.5, seed=5)
    whole = tiny_stylizer.stylize(photo, "fire", **{**options, "steps": 5})

    run = tiny_stylizer.start(photo, "fire", **options)
    stop = GracefulStop()
    seen: list[int] = []

    def on_step(info):
        seen.append(info.step)
        if info.step == 2:
            stop.request()  # the Stop button: the same hook Ctrl-C sets in the CLI

    run.advance(callback=on_step, should_stop=stop.requested)
    stopped = run.result()
    assert seen == [1, 2] and stopped.extra == {"status": "interrupted", "steps_done": 2}
    run.continue_for(3)  # "Continue 3 steps" from step 2: 5 in all
    continued = run.result()
    assert run.step == run.total_steps == 5 and continued.extra == {}
    assert continued.config.steps == 5 and continued.config == whole.config
    assert [row["lr"] for row in continued.history] == [row["lr"] for row in whole.history]
    for mine, theirs in zip(continued.history, whole.history):
        assert {k: v for k, v in mine.items() if k != "seconds"} == {k: v for k, v in theirs.items()
                                                                        if k != "seconds"}
    assert torch.equal(continued.tensor, whole.tensor)
    for key, value in _state(continued.unet).items():
        assert torch.equal(value, whole.unet.state_dict()[key]), key


def test_pieces_and_results_along_the_way_change_nothing(tiny_stylizer, photo):
    """Advancing 1 + 1 + 2 steps and rendering a result in between gives the 4-step run's image; a paused run
    says so."""
    whole = tiny_stylizer.stylize(photo, "fire", steps=4, seed=1)
    run = tiny_stylizer.start(photo, "fire", steps=4, seed=1)
    run.advance(1)
    first = run.result()
    assert first.extra == {"status": "paused", "steps_done": 1} and len(first.history) == 1
    run.advance(1)
    run.result()
    run.advance(2)
    assert run.finished
    assert torch.equal(run.result().tensor, whole.tensor)


def test_a_coarse_phase_continues_into_the_fine_one(tiny_stylizer, photo):
    options = dict(coarse_steps=2, coarse_size=64, steps=2, seed=2)
    whole = tiny_stylizer.stylize(photo, "fire", **{**options, "steps": 3})
    run = tiny_stylizer.start(photo, "fire", **options)
    run.advance(3)
    run.continue_for(2)  # from step 3 of 4 (2 coarse + 1 fine) to 5
    assert torch.equal(run.result().tensor, whole.tensor)
