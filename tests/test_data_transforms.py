"""Clip augmentation: the same transform for every frame, mirror-label swaps, normalisation, mixup/cutmix."""

import cv2
import numpy as np
import pytest
import torch

from edgevid.data import AugmentConfig, ClipAugment, eval_transform, mix_batch, normalize
from edgevid.data.transforms import RANDAUGMENT_OPS, color_jitter, random_resized_box
from edgevid.errors import EdgevidError

MEAN, STD = (0.45, 0.4, 0.35), (0.25, 0.2, 0.225)


def _image(height=48, width=64, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    return cv2.resize(small // 2 + 40, (width, height), interpolation=cv2.INTER_CUBIC)


def _repeated(image, frames=4):
    return np.repeat(image[None], frames, axis=0)


def test_every_randaugment_op_is_identical_across_frames_and_does_something():
    clip = _repeated(_image(), 3)
    for name, op in RANDAUGMENT_OPS.items():
        out = op(clip.copy(), 0.9, -1.0)
        assert out.shape == clip.shape and out.dtype == np.uint8, name
        assert all(np.array_equal(out[0], frame) for frame in out[1:]), name
        if name != "identity":
            assert not np.array_equal(out, clip), name


def test_full_training_augmentation_keeps_identical_frames_identical():
    augment = AugmentConfig(scale=(0.2, 1.0), color_jitter=0.5, randaugment=(3, 9))
    transform = ClipAugment(32, MEAN, STD, augment, ["a", "b"])
    clip = _repeated(_image(), 5)
    outputs = []
    for seed in range(12):
        out, _ = transform(clip, 0, np.random.default_rng(seed))
        assert out.shape == (3, 5, 32, 32) and out.dtype == torch.float32
        assert all(torch.equal(out[:, 0], out[:, t]) for t in range(1, 5))
        outputs.append(out)
    assert not torch.equal(outputs[0], outputs[1])  # randomness differs between clips


def test_colour_jitter_draws_once_per_clip():
    clip = _repeated(_image(), 3)
    out = color_jitter(clip, 0.8, np.random.default_rng(3))
    assert all(np.array_equal(out[0], f) for f in out[1:])
    assert not np.array_equal(out, clip)


def test_flip_swaps_mirror_class_labels():
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[:, 16:] = 255  # bright right half
    clip = _repeated(image, 2)
    augment = AugmentConfig(scale=(1.0, 1.0), aspect=(1.0, 1.0), mirror_classes=[("left", "right")])
    transform = ClipAugment(32, MEAN, STD, augment, ["left", "right", "still"])
    seen = set()
    for seed in range(40):
        out, label = transform(clip, 0, np.random.default_rng(seed))
        flipped = bool(out[0, 0, :, :16].mean() > out[0, 0, :, 16:].mean())
        assert label == (1 if flipped else 0)
        _, still = transform(clip, 2, np.random.default_rng(seed))
        assert still == 2
        seen.add(flipped)
    assert seen == {True, False}
    no_flip = ClipAugment(32, MEAN, STD, AugmentConfig(scale=(1.0, 1.0), aspect=(1.0, 1.0), flip=False), ["a"])
    for seed in range(20):
        out, _ = no_flip(clip, 0, np.random.default_rng(seed))
        assert out[0, 0, :, 16:].mean() > out[0, 0, :, :16].mean()


def test_reverse_plays_paired_classes_backwards_and_swaps_their_labels():
    """A clip that brightens frame by frame (zoom_in) reversed darkens (zoom_out); unpaired classes stay as they are."""
    clip = np.stack([np.full((32, 32, 3), 40 * t, dtype=np.uint8) for t in range(4)])
    augment = AugmentConfig(scale=(1.0, 1.0), aspect=(1.0, 1.0), flip=False,
                            reverse_classes=[("zoom_in", "zoom_out")])
    classes = ["zoom_in", "zoom_out", "shake"]
    off = ClipAugment(32, MEAN, STD, augment, classes)  # reverse is off unless a recipe turns it on
    assert all(off(clip, 0, np.random.default_rng(seed))[1] == 0 for seed in range(10))
    augment.reverse = True
    transform = ClipAugment(32, MEAN, STD, augment, classes)
    seen = set()
    for seed in range(40):
        out, label = transform(clip, 0, np.random.default_rng(seed))
        backwards = bool(out[0, 0].mean() > out[0, -1].mean())
        assert label == (1 if backwards else 0)
        seen.add(backwards)
        out, label = transform(clip, 2, np.random.default_rng(seed))
        assert label == 2 and out[0, 0].mean() < out[0, -1].mean()
    assert seen == {True, False}
    with pytest.raises(EdgevidError, match="reverse_classes names 'open'"):
        AugmentConfig(reverse_classes=[("open", "close")]).reverse_map(["close", "zoom_in"])


@pytest.mark.parametrize(("height", "width"), [(108, 192), (160, 120), (128, 128)])
def test_random_resized_crop_keeps_the_eval_views_scale_on_any_frame_shape(height, width):
    """Crops of a 16:9 or portrait frame have the area and aspect asked for, relative to the short side's square,
    and roam the whole frame; they are not one centre crop squeezed to a square."""
    side = min(height, width)
    boxes = np.array([random_resized_box(height, width, (0.7, 1.0), (0.75, 1.333), np.random.default_rng(seed))
                      for seed in range(200)])
    y, x, h, w = boxes.T
    assert (y >= 0).all() and (x >= 0).all() and (y + h <= height).all() and (x + w <= width).all()
    assert (h * w >= 0.69 * side * side).all() and (h * w <= 1.01 * side * side).all()
    assert (w / h >= 0.74).all() and (w / h <= 1.34).all()
    assert len({(a, b) for a, b in zip(y, x, strict=True)}) > 20  # positions vary
    if width > height:
        assert x.min() <= 5 and (x + w).max() >= width - 5  # both sides of a wide frame are seen


def test_eval_transform_crops_the_centre_and_normalises():
    frames = np.zeros((3, 60, 100, 3), dtype=np.uint8)
    frames[:, :, 20:80] = (200, 100, 50)  # the centre square; the sides (cut away) stay black
    out = eval_transform(30, MEAN, STD)(frames)
    assert out.shape == (3, 3, 30, 30) and out.dtype == torch.float32
    expected = (torch.tensor([200, 100, 50]) / 255 - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), expected.float(), atol=1e-4, rtol=0)
    torch.testing.assert_close(eval_transform(30, MEAN, STD)(torch.from_numpy(frames)), out)
    with pytest.raises(ValueError, match="uint8 RGB frames"):
        eval_transform(30, MEAN, STD)(frames.astype(np.float32))


def test_squash_fit_keeps_the_whole_frame_in_eval_and_training():
    """fit squash: evaluation resizes the whole 16:9 frame (the sides a crop cuts away stay in); training crops are
    drawn on the square the frame becomes, so a full-scale crop is the whole frame too."""
    frames = np.zeros((2, 54, 96, 3), dtype=np.uint8)
    frames[:, :, :16] = 255  # a white band at the left edge, outside the centre square
    crop = eval_transform(24, MEAN, STD)(frames)
    squash = eval_transform(24, MEAN, STD, fit="squash")(frames)
    white = (1 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert crop[:, :, :, 0].max() < 0 and torch.allclose(squash[:, :, :, 0], white[:, None, None].expand(3, 2, 24))
    assert squash[:, :, :, 6:].max() < 0  # the band fills 16/96 of the width: 4 of 24 columns
    whole = ClipAugment(24, MEAN, STD, AugmentConfig(scale=(1.0, 1.0), aspect=(1.0, 1.0), flip=False), ["a"],
                        fit="squash")
    clip, _ = whole(frames, 0, np.random.default_rng(0))
    torch.testing.assert_close(clip, squash)
    jitter = ClipAugment(24, MEAN, STD, AugmentConfig(scale=(0.5, 1.0), flip=False), ["a"], fit="squash")
    for seed in range(20):  # any crop of the squashed frame stays inside it
        clip, _ = jitter(frames, 0, np.random.default_rng(seed))
        assert clip.shape == (3, 2, 24, 24)
    with pytest.raises(ValueError, match="fit must be one of crop, squash"):
        eval_transform(24, MEAN, STD, fit="letterbox")


def test_normalize_matches_the_formula():
    clip = np.random.default_rng(0).integers(0, 256, size=(2, 5, 7, 3), dtype=np.uint8)
    expected = (torch.from_numpy(clip).permute(3, 0, 1, 2).float() / 255 - torch.tensor(MEAN)[:, None, None, None]) \
        / torch.tensor(STD)[:, None, None, None]
    torch.testing.assert_close(normalize(clip, MEAN, STD), expected)


def _constant_batch(batch=4, frames=3, size=16):
    return torch.arange(batch, dtype=torch.float32)[:, None, None, None, None].expand(batch, 3, frames, size, size)


def test_label_smoothing_and_mixup_targets():
    labels = torch.tensor([0, 1, 2, 3])
    clips = _constant_batch()
    _, plain = mix_batch(clips, labels, 5, AugmentConfig(), label_smoothing=0.1)
    assert torch.allclose(plain.sum(1), torch.ones(4))
    assert plain[0, 0].item() == pytest.approx(0.92) and plain[0, 1].item() == pytest.approx(0.02)
    generator = torch.Generator().manual_seed(0)
    mixed, targets = mix_batch(clips, labels, 5, AugmentConfig(mixup_alpha=0.4), generator=generator)
    assert torch.allclose(targets.sum(1), torch.ones(4))
    lam = targets[0, 0].item()
    assert 0 < lam < 1 and targets[0, 3].item() == pytest.approx(1 - lam)
    torch.testing.assert_close(mixed[0], torch.full_like(mixed[0], 3 * (1 - lam)))


def test_cutmix_uses_one_box_for_every_frame():
    labels = torch.tensor([0, 1, 2, 3])
    clips = _constant_batch(size=32)
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        mixed, targets = mix_batch(clips, labels, 4, AugmentConfig(cutmix_alpha=1.0), generator=generator)
        assert torch.allclose(targets.sum(1), torch.ones(4))
        pasted = mixed[0, 0] == 3.0  # sample 0 receives sample 3 inside the box: [T, H, W]
        assert all(torch.equal(pasted[0], pasted[t]) for t in range(1, 3))
        assert pasted[0].float().mean().item() == pytest.approx(targets[0, 3].item(), abs=1e-6)


def test_augment_config_rejects_bad_values():
    with pytest.raises(EdgevidError, match="scale"):
        AugmentConfig(scale=(0.5, 1.5))
    with pytest.raises(EdgevidError, match="randaugment"):
        AugmentConfig(randaugment=(2, 30))
    with pytest.raises(EdgevidError, match="'up'"):
        AugmentConfig(mirror_classes=[("left", "up")]).mirror_map(["left", "right"])
    assert AugmentConfig(scale=[0.3, 1], mirror_classes=[["a", "b"]]).mirror_map(["b", "c", "a"]).tolist() == [2, 1, 0]
