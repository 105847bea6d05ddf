"""Record the exact outputs of a few fixed runs of whichever ``clipstyle_opt`` tree is given.

Usage: ``python record.py TREE OUT.pt``. TREE is a directory holding a ``clipstyle_opt``
package (this checkout, or an earlier commit extracted by ``git archive``); it is imported
instead of any installed copy. The runs use only the public API that every tree since the
lock was written keeps, so the same script drives the tree before a refactor and after it
(`tests/test_behaviour_lock.py` compares the two, bit for bit, on this machine).

Each run is small (micro CLIP, at most 96 px, a few steps), single-threaded, in fp32 unless
the run is about the default precision. What is recorded: the output image (float32) and
every step's loss values and learning rate.
"""
from __future__ import annotations

import sys
from pathlib import Path


def _import_tree(tree: Path):
    """Import ``clipstyle_opt`` from ``tree``, never from an editable install's finder."""
    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
    sys.path.insert(0, str(tree))
    import clipstyle_opt

    where = Path(clipstyle_opt.__file__).resolve()
    if tree.resolve() not in where.parents:
        raise SystemExit(f"imported clipstyle_opt from {where}, not from {tree}")
    return clipstyle_opt


def main(tree: Path, out: Path) -> None:
    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(1)
    package = _import_tree(tree)
    from clipstyle_opt import StyleConfig, Stylizer, apply_unet_file

    root = Path(__file__).resolve().parents[2]
    micro_clip = str(root / "tests" / "data" / "micro_clip.pt")
    micro_siglip = f"local-dir:{root / 'tests' / 'data' / 'micro_siglip'}"
    photo = root / "examples" / "astronaut.png"
    mask = root / "examples" / "mask_left.png"
    # A decay every 2 steps by 0.7 (not a power of two), so the learning-rate arithmetic is part of the lock.
    small = dict(clip_model=micro_clip, size=64, steps=3, lr_decay_every=2, lr_decay=0.7, n_crops=4, crop_size=32,
                 device="cpu", precision="fp32", max_output_size=64, seed=3)
    records: dict[str, dict] = {}

    def keep(name: str, result) -> None:
        records[name] = {"image": result.tensor.float().clone(),
                         "history": [{k: v for k, v in row.items() if k != "seconds"} for row in result.history]}

    stylizer = Stylizer(StyleConfig(**small))
    default = stylizer.stylize(photo, "red stripes", precision="fp32")
    keep("default", default)
    keep("reference_structure", stylizer.stylize(photo, "red stripes", batched_crops=False))
    keep("fusion_with_mask", stylizer.stylize(photo, [("red stripes", 0.7), ("blue dots", 0.3)], fusion="embedding",
                                              mask=mask))
    keep("style_images", stylizer.stylize(photo, [("green waves", 1.0)], style_image=[root / "examples" / "chelsea.png"],
                                          style_image_clip=0.3))
    inverse = 1.0 - torch.from_numpy(np.asarray(Image.open(mask).convert("L"), dtype=np.float32) / 255.0)[None, None]
    keep("regions", stylizer.stylize(photo, [], regions=[(mask, "green waves"), (inverse, "red stripes")]))
    keep("focus", stylizer.stylize(photo, "red stripes", focus="yellow", focus_threshold=0.3))
    keep("coarse_to_fine", stylizer.stylize(photo, "yellow checks", coarse_steps=3, coarse_size=64, coarse_lr=1e-3,
                                            size=96, steps=2))
    # The captured (CUDA-graph) step, run uncaptured on the CPU.
    captured = Stylizer(StyleConfig(**small))
    if hasattr(captured, "graph_on_cpu"):
        captured.graph_on_cpu = True
    else:  # after the structure change: the step kind is an ordinary choice
        captured.step_kind = "captured"
    keep("captured_step", captured.stylize(photo, "red stripes"))
    ensemble = Stylizer(StyleConfig(**{**small, "clip_model": (f"{micro_clip}@0.6", f"{micro_siglip}@0.4")}))
    keep("ensemble", ensemble.stylize(photo, "red stripes"))
    auto = Stylizer(StyleConfig(**{**small, "precision": "auto"}))
    keep("default_precision", auto.stylize(photo, "blue dots"))

    unet_file = out.with_suffix(".unet.pt")
    default.save_unet(unet_file, overwrite=True)
    for stats in ("thumbnail", "exact"):
        image = apply_unet_file(unet_file, root / "examples" / "chelsea.png", output_size=300, tile_size=256,
                                stats=stats, device="cpu")
        records[f"tiled_apply_{stats}"] = {"image": image.float().clone(), "history": []}
    records["untiled_apply"] = {"image": apply_unet_file(unet_file, photo, output_size=72, device="cpu").float(),
                                "history": []}
    torch.save({"tree": str(tree), "package": package.__file__, "records": records}, out)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
