"""Frozen encoders: CLIP (clip.py) and VGG (vgg.py), plus weight loading (weights.py)."""
