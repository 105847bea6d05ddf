import torch

from clipstyle_opt.objective import augment
from clipstyle_opt.testing import tolerances


def params(seed=0, n=6, hw=(40, 56), size=16, distortion=0.5):
    return augment.sample_crop_params(n, hw, size, distortion, torch.Generator().manual_seed(seed))


def test_batched_equals_per_crop_loop():
    image = torch.rand(1, 3, 40, 56, requires_grad=True)
    p = params()
    batched = augment.apply_batched(image, p, 24)
    looped = augment.apply_per_crop(image, p, 24)
    assert batched.shape == (6, 3, 24, 24)
    assert torch.allclose(batched, looped, rtol=0, atol=tolerances.reordered())  # pixels in [0, 1]
    grad_b, = torch.autograd.grad(batched.square().sum(), image)
    grad_l, = torch.autograd.grad(looped.square().sum(), image)
    assert float((grad_b - grad_l).norm() / grad_l.norm()) < tolerances.reordered_gradient()


def test_no_distortion_gives_plain_crops():
    image = torch.rand(1, 3, 40, 56)
    p = params(distortion=0.0)
    crops = augment.apply_batched(image, p)
    for i in range(6):
        top, left = int(p.tops[i]), int(p.lefts[i])
        assert torch.allclose(crops[i], image[0, :, top:top + 16, left:left + 16], atol=1e-5)


def test_crops_stay_inside_and_corners_move_inward():
    p = params(n=200, distortion=1.0)
    assert int(p.tops.max()) <= 40 - 16 and int(p.lefts.max()) <= 56 - 16 and int(p.tops.min()) >= 0
    assert len(set(p.tops.tolist())) > 10  # really random


def test_perspective_fills_outside_with_zeros():
    image = torch.ones(1, 3, 32, 32)
    crops = augment.apply_batched(image, params(n=20, hw=(32, 32), size=32, distortion=1.0))
    assert (crops == 0).any(), "a distorted warp leaves black (fill 0) borders"


def test_same_seed_same_params_and_crop_size_clamped():
    a, b, c = params(seed=3), params(seed=3), params(seed=4)
    assert torch.equal(a.tops, b.tops) and torch.equal(a.homographies, b.homographies)
    assert not torch.equal(a.homographies, c.homographies)
    assert params(size=500).size == 40


def test_crop_gradient_is_exact_and_the_same_every_run():
    """Overlapping crops: the plain gather's backward (index_put_ accumulate) gave a different
    gradient on every call at this size; a seeded run must not."""
    params = augment.sample_crop_params(16, (128, 128), 64, 0.5, torch.Generator().manual_seed(1))
    image = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    weights = torch.randn(16, 3, 64, 64, generator=torch.Generator().manual_seed(2))

    def gradient() -> torch.Tensor:
        leaf = image.clone().requires_grad_(True)
        (augment.apply_batched(leaf, params) * weights).sum().backward()
        return leaf.grad

    first = gradient()
    assert all(torch.equal(first, gradient()) for _ in range(5))
    # and it is the gradient: per-crop slicing (slice backward) computes the same sums
    leaf = image.clone().requires_grad_(True)
    (augment.apply_per_crop(leaf, params) * weights).sum().backward()
    assert float((first - leaf.grad).norm() / leaf.grad.norm()) < tolerances.reordered_gradient()


def test_crop_gather_passes_gradcheck():
    params = augment.sample_crop_params(5, (12, 14), 6, 0.0, torch.Generator().manual_seed(3))
    image = torch.rand(1, 2, 12, 14, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x: augment._GatherCrops.apply(x, params.tops, params.lefts, params.size), (image,))


def corner_points(params: augment.CropParams, index: int) -> tuple[list[list[int]], list[list[int]]]:
    """The integer corner points (torchvision's frame, pixel centres at +0.5) that crop ``index``'s
    homography maps onto each other: start = the crop's corners, end = where they land."""
    last = params.size - 1
    start = torch.tensor([[0, 0], [last, 0], [last, last], [0, last]], dtype=torch.float64)
    homography = params.homographies[index].double()
    mapped = torch.cat([start - 0.5, torch.ones(4, 1, dtype=torch.float64)], dim=1) @ homography.T
    end = mapped[:, :2] / mapped[:, 2:] + 0.5
    assert torch.allclose(end, end.round(), atol=1e-3), "corners move by whole pixels, as RandomPerspective's"
    return start.int().tolist(), end.round().int().tolist()


def test_warp_matches_torchvision_perspective_on_the_same_corner_points():
    """The reference warps each crop with torchvision's RandomPerspective(fill=0); for the same
    corner points our batched warp must give torchvision's functional perspective."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    size = 64
    image = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    params = augment.sample_crop_params(12, (96, 128), size, 0.5, torch.Generator().manual_seed(5))
    ours = augment.apply_batched(image, params)
    # The homographies are float32, so source coordinates carry a relative error of a few float32
    # eps, i.e. up to about size * eps px; a pixel value moves by at most that times the largest
    # neighbour difference (1 for this image in [0, 1]). 16x that is the bound.
    tolerance = 16 * size * torch.finfo(torch.float32).eps
    for i in range(len(params)):
        start, end = corner_points(params, i)
        top, left = int(params.tops[i]), int(params.lefts[i])
        crop = image[:, :, top:top + size, left:left + size]
        expected = TF.perspective(crop, start, end, interpolation=InterpolationMode.BILINEAR, fill=[0.0, 0.0, 0.0])
        assert float((ours[i] - expected[0]).abs().max()) <= tolerance, i


def test_crops_are_resized_like_the_reference_resize():
    """torchvision's Resize (bilinear; no antialiasing in the reference's 2021 torchvision)."""
    from torchvision.transforms import InterpolationMode, Resize

    assert augment.CROP_RESIZE_MODE == "bilinear"
    image = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    p = params()
    warped = augment.apply_batched(image, p)
    resized = augment.apply_batched(image, p, 37)
    expected = Resize(37, interpolation=InterpolationMode.BILINEAR, antialias=False)(warped)
    tolerance = 8 * torch.finfo(torch.float32).eps
    assert float((resized - expected).abs().max()) <= tolerance
    bicubic = torch.nn.functional.interpolate(warped, size=(37, 37), mode="bicubic", align_corners=False)
    assert float((bicubic - expected).abs().max()) > 100 * tolerance  # the test tells the modes apart
