"""The trained U-Net and everything done with one after training: saving and loading, rendering at
any size (tiles with frozen normalization statistics), folders of photos and videos."""
from .model import StyleUNet, apply_unet, count_parameters, seeded_unet

__all__ = ["StyleUNet", "apply_unet", "count_parameters", "seeded_unet"]
