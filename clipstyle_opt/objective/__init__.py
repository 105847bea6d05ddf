"""What a run optimizes: the loss functions, the crops, the guidance (prompts, style images, masks,
focus) and `StyleObjective`, which turns a U-Net output into the weighted loss of one step."""
from .style_objective import TERM_NAMES, StyleObjective

__all__ = ["StyleObjective", "TERM_NAMES"]
