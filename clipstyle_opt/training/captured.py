"""A training step captured once as a CUDA graph and replayed every step (CUDA only).

Why: on a GPU the step is bound by launching kernels, not by arithmetic. On one
H100 a reference step (64 crops, 512 px, ViT-B/32) is about 1.5 TFLOP, a few
milliseconds of tensor-core work, yet it took 185 ms: the U-Net, VGG, the crop
warp and CLIP forward and backward are thousands of small kernels, each issued
from Python. A CUDA graph records those launches once and replays them with
one call, so the host no longer paces the GPU.

What a captured step must give up, and how this module keeps the results equal:
- Fixed memory: the content, the crop buffers (`augment.StaticCrops`), the
  weights, gradients, Adam's state and the learning rate all live at fixed
  addresses; each step's crops and learning rate are copied in before replay.
- No host reads inside the step: the crop path reads nothing back (see
  `augment.StaticCrops`), the patch rejection's kept share stays a tensor, and
  the step's loss values and the gradients' finiteness are computed inside the
  graph and read once after it; the weights before the step are copied into
  fixed buffers just before the replay (`guards.KeptWeights`).
- The whole objective in one graph (the one-backward structure of
  `StyleObjective.terms`), not the chunked backward of `StyleObjective.backward`:
  GPU memory is ample, and one CLIP call of 65 images is fewer launches.
- Adam runs fused and capturable, with the learning rate a device tensor
  (a float would be baked into the graph); `step` sets it each step.
- Warm-up steps (torch needs a few before capturing) are undone: the weights
  and Adam's state are put back exactly, so step 1 replays from the weights the
  phase started from (the seeded U-Net, or the coarse phase's result).

Not captured (`steps.resolve_kind` picks the plain step): several regions (their
crops are selected by value, a host read), and any device but CUDA. With
``capture=False`` the same step runs without a graph: that is how the CPU test
suite checks it computes what the plain step does.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch

from ..objective import augment
from ..devices import is_out_of_memory
from ..errors import ClipstyleWarning, first_line
from ..objective.style_objective import StyleObjective
from ..unet.model import StyleUNet
from .guards import KeptWeights

WARMUP_STEPS = 3
"""Steps run (and undone) before capture: torch's CUDA-graph notes ask for a few, on a side stream."""


def can_capture(objective: StyleObjective) -> bool:
    """Whether ``objective``'s step has no host reads: false with several regions (crops picked by value)."""
    return all(len(member.regions) <= 1 for member in objective.members)


def captured_optimizer(unet: StyleUNet, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam for a captured step: fused and capturable on CUDA, its learning rate a device tensor set in
    place each step. Elsewhere (the uncaptured check on the CPU) torch's plain Adam with a tensor rate."""
    cuda = device.type == "cuda"
    return torch.optim.Adam(unet.parameters(), lr=torch.tensor(lr, device=device), fused=cuda, capturable=cuda)


class CapturedStep:
    """One training step (U-Net forward, objective, backward, Adam) as a replayable unit.

    ``step(params, lr)`` copies the crops and the learning rate in, replays the
    graph (or, with ``capture=False``, runs the same code eagerly) and returns
    the loss values as floats (`StyleObjective.terms`' keys), the gradients'
    finiteness, and the output the step trained on (a fixed buffer: clone it to keep it).
    """

    def __init__(self, unet: StyleUNet, objective: StyleObjective, content: torch.Tensor,
                 optimizer: torch.optim.Adam, first_params: augment.CropParams | None = None, *, capture: bool = True,
                 kept: KeptWeights | None = None) -> None:
        """first_params: the first step's crops, which fix the crop buffers' shapes (None: the first `step`'s,
        and the capture happens then); kept: the run's `KeptWeights` (None: this step's own)."""
        self.unet, self.objective, self.content, self.optimizer = unet, objective, content, optimizer
        self.parameters = [p for p in unet.parameters() if p.requires_grad]
        # The weights before this step and before the last one: a NaN falls back to the latter.
        self.kept = kept if kept is not None else KeptWeights(unet)
        self.steps_done = 0
        self.capture = capture
        self.graph: torch.cuda.CUDAGraph | None = None
        self.crops: augment.StaticCrops | None = None
        if first_params is not None:
            self._build(first_params)

    def _build(self, first_params: augment.CropParams) -> None:
        """Allocate the crop buffers for ``first_params``' shapes, then capture (when asked)."""
        self.crops = augment.StaticCrops(len(first_params), first_params.size, self.content.device)
        self.crops.load(first_params)
        if self.capture:
            self._capture()

    def _body(self) -> None:
        """The step itself; every tensor it writes is kept on ``self`` (fixed addresses when captured)."""
        assert self.crops is not None
        output = self.unet(self.content)
        terms = self.objective.terms(output, self.crops)
        terms["total"].backward()
        with torch.no_grad():
            self.keys = list(terms)
            self.values = torch.stack([terms[key].detach().float().reshape(()) for key in self.keys])
            grads = [p.grad for p in self.parameters if p.grad is not None]
            self.grads_finite = torch.stack([torch.isfinite(g).all() for g in grads]).all()
            self.output = output.detach()
        self.optimizer.step()

    def _capture(self) -> None:
        """Warm up, capture `_body`, then undo the warm-up. If capturing fails (an op this torch cannot
        capture), warn and run the same step uncaptured: slower, never wrong."""
        weights = [p.detach().clone() for p in self.parameters]
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    self.optimizer.zero_grad(set_to_none=True)
                    self._body()
            torch.cuda.current_stream().wait_stream(side)
            self.optimizer.zero_grad(set_to_none=True)  # the captured backward then writes the gradients anew
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._body()
            self.graph = graph
        except RuntimeError as exc:
            if is_out_of_memory(exc):  # not a capture problem: the engine reports it
                raise
            self.graph = None
            self.optimizer.zero_grad(set_to_none=True)
            reason = first_line(exc)
            warnings.warn(ClipstyleWarning(f"the training step could not be captured as a CUDA graph ({reason}); "
                                           "running it uncaptured, slower (--no-cuda-graph skips the attempt)"),
                          stacklevel=6)  # _build, step, the loop, the engine: the stylize call
        with torch.no_grad():  # undo the warm-up: the starting weights, and Adam as if it had never stepped
            torch._foreach_copy_([p.detach() for p in self.parameters], weights)
            for state in self.optimizer.state.values():
                for value in state.values():
                    if isinstance(value, torch.Tensor):
                        value.zero_()

    def step(self, params: augment.CropParams, lr: float) -> tuple[dict[str, float], bool, torch.Tensor]:
        """Run one step on ``params``' crops at learning rate ``lr``: (values, gradients finite, output).

        The interface of `clipstyle_opt.training.steps.TrainingStep`; the output is a fixed buffer, overwritten
        by the next step.
        """
        if self.crops is None:
            self._build(params)
        assert self.crops is not None
        self.kept.record()  # outside the graph: plain copies into fixed buffers before the replay
        self.crops.load(params)
        for group in self.optimizer.param_groups:
            group["lr"].fill_(lr)
        if self.graph is not None:
            self.graph.replay()
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self._body()
        self.steps_done += 1
        numbers = self.values.tolist()  # the one host read of the step
        return dict(zip(self.keys, numbers)), bool(self.grads_finite), self.output

    def fallback_state(self) -> dict[str, torch.Tensor] | None:
        """The weights before the last step (whose output was still finite), or None in the run's first step."""
        return self.kept.fallback_state()


__all__: Sequence[str] = ("CapturedStep", "can_capture", "captured_optimizer", "WARMUP_STEPS")
