import pytest
import torch

from clipstyle_opt.unet.model import apply_unet, seeded_unet
from clipstyle_opt.unet.model import StyleUNet, count_parameters


def test_reference_size_is_about_0_6_million_parameters():
    assert 550_000 < count_parameters(StyleUNet(16)) < 650_000


def test_output_is_an_image_of_the_same_size():
    unet = StyleUNet(8)
    out = unet(torch.rand(1, 3, 48, 64))
    assert out.shape == (1, 3, 48, 64)
    assert 0 <= out.min() and out.max() <= 1


def test_sides_must_be_multiples_of_8():
    with pytest.raises(ValueError, match="multiples of 8"):
        StyleUNet(8)(torch.rand(1, 3, 50, 64))


def test_apply_unet_handles_any_size_by_padding():
    unet = StyleUNet(8).eval()
    with torch.no_grad():
        out = apply_unet(unet, torch.rand(1, 3, 51, 37))
    assert out.shape == (1, 3, 51, 37)


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = seeded_unet(8, 1), seeded_unet(8, 1), seeded_unet(8, 2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.lift.weight, c.lift.weight)


def test_applying_without_gradients_computes_the_training_forward_bit_for_bit():
    """Without gradients the blocks add their shortcut in place (to keep less in memory when applying
    large tiles); the result must be the one the training forward gives."""
    unet = seeded_unet(8, 3)
    image = torch.rand(1, 3, 48, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        applied = unet(image)
    trained = unet(image)
    assert trained.requires_grad
    assert torch.equal(applied, trained.detach())
