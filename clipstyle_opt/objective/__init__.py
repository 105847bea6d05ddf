"""What a run optimizes: the loss functions, the table of loss terms (`terms`), the crops, the guidance
(prompts, style images, masks, focus) and `StyleObjective`, which turns a U-Net output into the weighted
loss of one step."""
from .style_objective import StyleObjective
from .terms import TERM_NAMES, TERMS, LossTerm

__all__ = ["StyleObjective", "TERM_NAMES", "TERMS", "LossTerm"]
