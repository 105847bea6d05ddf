import torch

from clipstyle_opt import augment


def params(seed=0, n=6, hw=(40, 56), size=16, distortion=0.5):
    return augment.sample_crop_params(n, hw, size, distortion, torch.Generator().manual_seed(seed))


def test_batched_equals_per_crop_loop():
    image = torch.rand(1, 3, 40, 56, requires_grad=True)
    p = params()
    batched = augment.apply_batched(image, p, 24)
    looped = augment.apply_per_crop(image, p, 24)
    assert batched.shape == (6, 3, 24, 24)
    assert torch.allclose(batched, looped, atol=1e-6)
    grad_b, = torch.autograd.grad(batched.square().sum(), image)
    grad_l, = torch.autograd.grad(looped.square().sum(), image)
    assert torch.allclose(grad_b, grad_l, atol=1e-5)


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
    assert torch.allclose(first, leaf.grad, atol=1e-5)


def test_crop_gather_passes_gradcheck():
    params = augment.sample_crop_params(5, (12, 14), 6, 0.0, torch.Generator().manual_seed(3))
    image = torch.rand(1, 2, 12, 14, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x: augment._GatherCrops.apply(x, params.tops, params.lefts, params.size), (image,))
