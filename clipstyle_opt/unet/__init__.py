"""The trained U-Net and everything done with one after training: saving and loading, rendering at
any size (tiles with frozen normalization statistics), folders of photos and videos."""
from .model import StyleUNet, count_parameters

__all__ = ["StyleUNet", "count_parameters"]
