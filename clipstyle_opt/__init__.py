"""clipstyle_opt: text-driven image style transfer by per-image optimization (CLIPstyler).

Public surface::

    from clipstyle_opt import stylize, Stylizer, StyleConfig
    result = stylize("photo.jpg", "a watercolor painting", steps=100)
    result.save("out.png")
    stylize("clip.mp4", "a watercolor painting", output="out.mp4", steps=100)   # a video: keyframes, every frame

    from clipstyle_opt import sweep                      # ablations: many runs, one table
    frame = sweep("examples/sweeps/clipstyler_ablation.yaml", "runs/ablation")
"""
from .config import PRESETS, StyleConfig, preset_config
from .engine import Stylizer
from .video import stylize, stylize_video
from .result import Result, StepInfo
from .unet.io import load_unet
from .unet.render import apply_unet_file
from .errors import ClipstyleError, ConfigError, ImageReadError, ModelUnavailableError, OutputExistsError
from .sweeps.api import sweep

__version__ = "0.2.0"

__all__ = [
    "stylize", "stylize_video", "Stylizer", "StyleConfig", "Result", "StepInfo", "PRESETS", "preset_config",
    "apply_unet_file", "load_unet", "ClipstyleError", "ConfigError", "ImageReadError",
    "ModelUnavailableError", "OutputExistsError", "sweep", "__version__",
]
