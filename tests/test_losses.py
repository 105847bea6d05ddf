"""Each loss against a hand computation."""
import math

import pytest
import torch

from clipstyle_opt.objective import losses


def unit(angle: float) -> torch.Tensor:
    return torch.tensor([math.cos(angle), math.sin(angle)])


def test_text_direction_points_from_source_to_style():
    source, style = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    direction = losses.text_direction(style, source)
    assert torch.allclose(direction, torch.tensor([-1.0, 1.0]) / math.sqrt(2))


def test_directional_loss_is_zero_along_and_two_against_the_direction():
    source = torch.tensor([0.2, 0.1])
    direction = torch.tensor([1.0, 0.0])
    along = (source + torch.tensor([0.5, 0.0])).unsqueeze(0)
    against = (source - torch.tensor([0.5, 0.0])).unsqueeze(0)
    assert losses.directional_loss(along, source, direction).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.directional_loss(against, source, direction).item() == pytest.approx(2.0, abs=1e-6)
    # Perpendicular movement scores exactly 1.
    side = (source + torch.tensor([0.0, 0.3])).unsqueeze(0)
    assert losses.directional_loss(side, source, direction).item() == pytest.approx(1.0, abs=1e-6)


def test_patch_loss_rejects_scores_below_threshold():
    source = torch.zeros(2)
    direction = torch.tensor([1.0, 0.0])
    # Scores 1 - cos(angle): 0.5, 0.8 and 1.2.
    angles = [math.acos(1 - s) for s in (0.5, 0.8, 1.2)]
    crops = torch.stack([unit(a) for a in angles])
    loss = losses.patch_loss(crops, source, direction, threshold=0.7)
    assert loss.item() == pytest.approx((0.0 + 0.8 + 1.2) / 3, abs=1e-5)
    # Threshold 0 keeps every patch.
    assert losses.patch_loss(crops, source, direction, 0.0).item() == pytest.approx((0.5 + 0.8 + 1.2) / 3, abs=1e-5)


def test_patch_loss_gradient_only_through_kept_patches():
    source = torch.zeros(2)
    direction = torch.tensor([1.0, 0.0])
    crops = torch.stack([unit(math.acos(0.5)), unit(math.acos(1 - 1.2))]).requires_grad_(True)
    losses.patch_loss(crops, source, direction, threshold=0.7).backward()
    assert torch.count_nonzero(crops.grad[0]) == 0  # score 0.5: rejected
    assert torch.count_nonzero(crops.grad[1]) > 0


def test_total_variation_on_a_known_tensor():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    expected = math.sqrt(2) + math.sqrt(8) + 1.0 + 3.0
    assert losses.total_variation(x).item() == pytest.approx(expected, rel=1e-6)


def test_gram_matrix_on_a_known_tensor():
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, 2, 1, 2)
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4.0
    assert torch.allclose(losses.gram_matrix(features), expected)


def test_style_loss_is_squared_frobenius_distance_of_grams():
    features = {"a": torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])}
    target = {"a": torch.zeros(1, 2, 2)}
    expected = (25 + 121 + 121 + 625) / 16.0
    assert losses.style_loss(features, target, ["a"]).item() == pytest.approx(expected)


def test_content_loss_sums_mse_over_layers():
    a = {"x": torch.ones(1, 1, 2, 2), "y": torch.zeros(1, 2, 1, 1)}
    b = {"x": torch.zeros(1, 1, 2, 2), "y": torch.full((1, 2, 1, 1), 3.0)}
    assert losses.content_loss(a, b, ["x", "y"]).item() == pytest.approx(1.0 + 9.0)
    assert losses.content_loss(a, b, ["x"]).item() == pytest.approx(1.0)
