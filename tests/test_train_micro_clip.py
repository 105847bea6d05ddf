"""The micro-CLIP trainer (microclip/train_micro_clip.py) and its adversarial step (microclip/contrastive.py).

The bundled micro CLIP is trained partly on perturbed images, so that the
stylization has to draw the pattern rather than faint streaks. These tests
check the perturbation itself on a tiny random model: it stays inside its
L-infinity ball (in pixel units, before CLIP's normalization) and it raises
the loss it attacks.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from microclip import contrastive, micro_siglip, train_micro_clip, training_data
from microclip.batches import make_training_batch
from microclip.scoring import CLIP_STD, preprocess_images, tokenize_trimmed


@pytest.fixture(scope="module")
def trainer():
    return train_micro_clip


@pytest.fixture(scope="module")
def setup(trainer):
    torch.manual_seed(0)
    args = trainer.parse_args(["--embed-dim", "32", "--vision-layers", "1", "--vision-width", "64",
                               "--text-width", "64", "--text-layers", "1", "--image-resolution", "32"])
    model = trainer.build(args).eval()
    batch = make_training_batch(16, 32, np.random.default_rng(0))
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    images = preprocess_images(batch.images, 32)  # CLIP-normalized, as the trainer feeds the model
    unique = sorted(set(batch.captions))
    index = torch.tensor([unique.index(c) for c in batch.captions])
    with torch.no_grad():
        text = model.encode_text(tokenize_trimmed(unique))[index].float()
    return model, images, text, batch.positives(), std


def loss_of(trainer, model, images, text, positives) -> float:
    with torch.no_grad():
        return float(contrastive.image_to_text_loss(model.encode_image(images).float(), text, model.logit_scale,
                                                positives))


def test_perturbation_stays_in_its_ball_and_raises_the_loss(trainer, setup):
    model, images, text, positives, std = setup
    eps = 8 / 255
    perturbed = contrastive.adversarial_images(model, images, text, positives, eps, std,
                                           torch.Generator().manual_seed(0), bf16=False)
    pixel_change = (perturbed - images) * std
    assert float(pixel_change.abs().max()) <= eps * (1 + 1e-5)
    assert float(pixel_change.abs().mean()) > eps / 2  # mostly at the ball's edge, not a no-op
    clean = loss_of(trainer, model, images, text, positives)
    attacked = loss_of(trainer, model, perturbed, text, positives)
    random_sign = images + eps / std * torch.randint(0, 2, images.shape, generator=torch.Generator().manual_seed(1)
                                                     ).mul(2).sub(1)
    noisy = loss_of(trainer, model, random_sign, text, positives)
    print(f"loss clean {clean:.4f}, random signs {noisy:.4f}, adversarial {attacked:.4f}")
    assert attacked > clean and attacked > noisy


def test_zero_radius_changes_nothing(trainer, setup):
    model, images, text, positives, std = setup
    same = contrastive.adversarial_images(model, images, text, positives, 0.0, std,
                                      torch.Generator().manual_seed(0), bf16=False)
    assert torch.equal(same, images)


def test_sigmoid_loss_is_siglip_s_pairwise_formula():
    """-sum over pairs of log sigmoid(z (t cos + b)) / N, z = +1 for the positives: checked on a
    hand-made 2 x 3 case, where several positives in a row need no special handling."""
    images = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    texts = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    positives = torch.tensor([[True, False, True], [False, True, False]])
    log_t, b = torch.tensor(float(np.log(10.0))), torch.tensor(-3.0)
    loss = micro_siglip.sigmoid_loss(images, texts, log_t, b, positives)
    cos = np.array([[1.0, 0.0, 2 ** -0.5], [0.0, 1.0, 2 ** -0.5]])
    z = np.where(positives.numpy(), 1.0, -1.0)
    expected = -np.log(1 / (1 + np.exp(-z * (10 * cos - 3)))).sum() / 2
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_quick_held_out_accuracy_matches_the_zero_shot_check(trainer, setup):
    """The accuracy printed during training (--eval-every) is the final check's joint accuracy,
    computed on the model in memory: for the CLIP family both resize, normalize and take the
    softmax the same way, so they must agree exactly."""
    from microclip.batches import make_batch
    from microclip.scoring import CLIP_MEAN, zero_shot_accuracy

    model = setup[0]
    images, _, labels = make_batch(48, 40, np.random.default_rng(3))
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    quick = trainer.held_out_accuracy(model, None, images, labels, mean, setup[4], 32, 77)
    full = zero_shot_accuracy(model, images, labels)
    assert quick == {"joint_colour": full["joint_colour"], "joint_pattern": full["joint_pattern"]}


def test_training_loop_with_the_recipe_flags(trainer, tmp_path):
    """Three steps of the whole loop at a tiny size: a frozen logit scale (calibration learning
    rate 0) stays exactly where it started, the peeks of --eval-every land in the report, and
    --colours-per-batch, --grad-clip 0 and --beta2 are taken."""
    import json

    out = tmp_path / "tiny.pt"
    code = trainer.main(["--out", str(out), "--steps", "3", "--warmup", "1", "--batch-size", "8",
                         "--render-size", "40", "--eval-images", "8", "--eval-every", "3", "--log-every", "3",
                         "--embed-dim", "32", "--vision-layers", "1", "--vision-width", "64", "--text-width", "64",
                         "--text-layers", "1", "--image-resolution", "32", "--threads", "1", "--precision", "fp32",
                         "--calibration-lr-scale", "0", "--colours-per-batch", "2", "--grad-clip", "0",
                         "--beta2", "0.95"])
    assert code == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["logit_scale"] == pytest.approx(1 / 0.07, rel=1e-6)  # CLIP's initial scale, untouched
    assert set(report["held_out_during_training"]) == {"3"}
    assert report["device"] == "cpu"


def test_a_data_worker_renders_the_same_batches_in_the_same_order(trainer):
    """--data-workers 1 renders in a DataLoader worker process; the model must see exactly the
    batches it sees with 0 (rendered between steps), or a recorded command would not remake its model."""
    args = trainer.parse_args(["--steps", "3", "--batch-size", "6", "--render-size", "24", "--colours-per-batch", "3"])
    in_process = list(training_data.training_batches(args))
    args.data_workers = 1
    in_worker = list(training_data.training_batches(args))
    assert len(in_process) == len(in_worker) == 3
    for a, b in zip(in_process, in_worker):
        assert torch.equal(a.images, b.images)
        assert (a.captions, a.image_labels, a.caption_labels) == (b.captions, b.image_labels, b.caption_labels)
    assert not torch.equal(in_process[0].images, in_process[1].images)  # a stream, not one batch repeated


@pytest.mark.parametrize("schedule", ["cosine", "wsd"])
def test_learning_rate_schedules(trainer, schedule):
    args = trainer.parse_args(["--steps", "100", "--warmup", "10", "--lr", "1e-3", "--schedule", schedule,
                               "--decay-fraction", "0.2"])
    rates = [trainer.learning_rate(step, args) for step in range(100)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)  # linear warm-up
    assert max(rates) == pytest.approx(1e-3)
    assert all(later <= earlier + 1e-12 for earlier, later in zip(rates[9:], rates[10:]))  # never rises again
    assert rates[-1] <= 0.05 * 1e-3 + 1e-12
    if schedule == "wsd":  # the peak held until the last 20 % of the steps, then a linear decay
        assert rates[79] == pytest.approx(1e-3)
        assert rates[90] == pytest.approx(1e-3 * 10 / 20)
    else:
        assert rates[55] == pytest.approx(0.5e-3)  # half-way through the cosine


def test_softmax_first_switches_to_the_sigmoid_loss_at_its_step(trainer):
    """--softmax-first 0.25 of 8 steps: steps 0-1 use CLIP's softmax loss, steps 2-7 SigLIP's sigmoid loss."""
    import types

    args = trainer.parse_args(["--family", "siglip", "--steps", "8", "--softmax-first", "0.25"])
    family = micro_siglip.SiglipFamily.__new__(micro_siglip.SiglipFamily)  # the loss parts only: no tokenizer to train
    family.loss_kind = args.siglip_loss
    family.softmax_steps = micro_siglip.softmax_step_count(args)
    model = types.SimpleNamespace(logit_scale=torch.tensor(2.3), logit_bias=torch.tensor(-3.0))
    generator = torch.Generator().manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(4, 8, generator=generator), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(4, 8, generator=generator), dim=-1)
    positives = torch.eye(4, dtype=torch.bool)
    softmax = contrastive.contrastive_loss(images, texts, model.logit_scale, positives)
    sigmoid = micro_siglip.sigmoid_loss(images, texts, model.logit_scale, model.logit_bias, positives)
    losses = [float(family.loss_fn(model, detach=False, step=step)(images, texts, positives)) for step in range(8)]
    assert losses == [float(softmax)] * 2 + [float(sigmoid)] * 6
    with pytest.raises(SystemExit):
        trainer.parse_args(["--steps", "8", "--softmax-first", "0.25"])  # the CLIP family has no sigmoid to switch to


def test_siglip_trainer_attends_explicitly_on_the_cpu_only(trainer):
    """The trainer's kernel choice for the timm trunk: timm's explicit attention on the CPU (faster
    there, see SiglipFamily.prepare), timm's own choice elsewhere."""
    import json

    from clipstyle_opt.encoders.openclip import timm_attention_layers

    config = json.loads((Path(__file__).parent / "data" / "micro_siglip" / "open_clip_config.json").read_text())
    family = micro_siglip.SiglipFamily.__new__(micro_siglip.SiglipFamily)  # no tokenizer to train
    for device, fused in (("cuda", True), ("cpu", False)):
        model = micro_siglip.build_model(config)
        layers = timm_attention_layers(model)
        assert len(layers) == len(model.visual.trunk.blocks) + 1 and all(layer.fused_attn for layer in layers)
        family.prepare(model, torch.device(device))
        assert all(layer.fused_attn is fused for layer in layers)


def test_adversarial_radius_ramps_after_the_clean_start(trainer):
    """--adversarial-start 0.5 of 10 steps: steps 0-4 clean, then the radius ramps over
    --adversarial-warmup 0.2 (2 steps) to --adversarial-eps; the default starts ramping at step 0."""
    args = trainer.parse_args(["--steps", "10", "--adversarial-eps", "0.04", "--adversarial-warmup", "0.2",
                               "--adversarial-start", "0.5"])
    radii = [contrastive.adversarial_radius(step, args) for step in range(10)]
    assert radii == pytest.approx([0.0] * 5 + [0.02] + [0.04] * 4)
    args.adversarial_start = 0.0
    assert [contrastive.adversarial_radius(step, args) for step in range(3)] == pytest.approx([0.02, 0.04, 0.04])
    with pytest.raises(SystemExit):
        trainer.parse_args(["--adversarial-start", "1.5"])


def test_free_mode_perturbation_stays_in_its_ball_and_raises_the_loss(trainer, setup):
    """--adversarial-mode free moves last step's images along the sign of the gradient that step's
    backward gave; here the gradient is taken at the clean images, as the training step takes it."""
    model, images, text, positives, std = setup
    eps = 8 / 255
    clean = images.clone().requires_grad_(True)
    contrastive.image_to_text_loss(model.encode_image(clean).float(), text, model.logit_scale.detach(),
                               positives).backward()
    perturbed = contrastive.carry_perturbed(images, clean.grad, eps, std, torch.Generator().manual_seed(0))
    pixel_change = (perturbed - images) * std
    assert float(pixel_change.abs().max()) <= eps * (1 + 1e-5)
    assert float(pixel_change.abs().mean()) > eps / 2
    random_sign = images + eps / std * torch.randint(0, 2, images.shape, generator=torch.Generator().manual_seed(1)
                                                     ).mul(2).sub(1)
    attacked, noisy = (loss_of(trainer, model, x, text, positives) for x in (perturbed, random_sign))
    print(f"loss clean {loss_of(trainer, model, images, text, positives):.4f}, random signs {noisy:.4f}, "
          f"free-mode perturbation {attacked:.4f}")
    assert attacked > noisy and attacked > loss_of(trainer, model, images, text, positives)


def test_free_mode_carries_half_the_batch_after_the_clean_start(trainer):
    """The stream renders only the images not carried over: none in fgsm mode or before the first
    adversarial step, none at that step (nothing to carry yet), then --adversarial-fraction of the batch."""
    args = trainer.parse_args(["--steps", "10", "--batch-size", "8", "--adversarial-start", "0.5",
                               "--adversarial-mode", "free"])
    assert training_data.carried_counts(args) == [0] * 6 + [4] * 4
    assert [len(b.captions) for b in training_data.training_batches(args)] == [8] * 6 + [4] * 4
    args.adversarial_fraction = 0.75  # more than the fresh part: carry what there is
    assert training_data.carried_counts(args) == [0] * 6 + [6, 2, 6, 2]
    args.adversarial_mode = "fgsm"
    assert training_data.carried_counts(args) == [0] * 10


@pytest.mark.parametrize("data_workers", ["0", "1"])
def test_training_loop_in_free_mode(trainer, tmp_path, data_workers):
    """Four steps of the whole loop, two of them with carried, perturbed images, with the data
    rendered in-process or in a worker: the loop's batch layout and the stream's must agree."""
    out = tmp_path / "tiny.pt"
    code = trainer.main(["--out", str(out), "--steps", "4", "--warmup", "1", "--batch-size", "8",
                         "--render-size", "40", "--eval-images", "8", "--log-every", "4",
                         "--embed-dim", "32", "--vision-layers", "1", "--vision-width", "64", "--text-width", "64",
                         "--text-layers", "1", "--image-resolution", "32", "--threads", "1", "--precision", "fp32",
                         "--adversarial-mode", "free", "--adversarial-start", "0.25", "--data-workers", data_workers])
    assert code == 0 and out.exists()


def test_tokenizer_trainer_remakes_the_bundled_micro_siglip_tokenizer():
    """With the pinned sentencepiece (constraints.txt), training the tokenizer again gives the bundled
    folder's pieces, and every caption the generator writes fits the folder's 16-token context. Another
    sentencepiece release gives other pieces (0.2.3: 140, and 17-token captions): this fails then."""
    import json

    tokenizer = micro_siglip.train_tokenizer()
    folder = Path(__file__).parent / "data" / "micro_siglip"
    bundled = json.loads((folder / "tokenizer.json").read_text())
    context = json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]["text_cfg"]["context_length"]
    assert [piece for piece, _ in bundled["model"]["vocab"]] == [
        tokenizer.convert_ids_to_tokens(i) for i in range(len(tokenizer))]
    assert micro_siglip.longest_caption(tokenizer)[0] <= context


def test_siglip_trainer_stops_at_once_when_a_caption_overflows_the_context(trainer):
    """The check runs before training (it once came after half an hour, in the final evaluation)."""
    args = trainer.parse_args(["--family", "siglip", "--context-length", "8"])
    with pytest.raises(SystemExit, match=r"into \d+ tokens, over --context-length 8"):
        micro_siglip.SiglipFamily(args)
