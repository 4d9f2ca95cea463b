"""Dataset layouts, class lists, segments, test views and the loader's corrupt-video reporting."""

import numpy as np
import pytest
import torch
import torch.distributed as dist

from edgevid.data import AugmentConfig, build_dataset, build_loader, find_split
from edgevid.data.datasets import dataset_info
from edgevid.data.synth import write_video
from edgevid.errors import EdgevidError

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
SIZE = 32


def _flat_video(path, count=20, fps=25, width=SIZE, height=SIZE):
    """Frame i is flat grey 4*i: the frame index survives any crop, resize and compression."""
    frames = (np.full((height, width, 3), 4 * i, dtype=np.uint8) for i in range(count))
    return write_video(path, frames, fps, crf=10)


def _frame_indices(clip: torch.Tensor) -> list[int]:
    """Frame indices back from a normalised clip [3, T, S, S] of flat frames."""
    grey = (clip.mean(dim=(0, 2, 3)) * STD[0] + MEAN[0]) * 255
    return [round(v / 4) for v in grey.tolist()]


def _build(root, split="train", **kw):
    settings = dict(frames=4, size=SIZE, sampling_stride=2, mean=MEAN, std=STD, train=False)
    settings.update(kw)
    return build_dataset(root, split, **settings)


def _class_tree(folder, classes=("jump", "run"), per_class=2):
    for name in classes:
        for k in range(per_class):
            _flat_video(folder / name / f"{name}{k}.mp4", count=12)


def test_folder_per_class_with_split_folders(tmp_path):
    _class_tree(tmp_path / "train", ("run", "jump", "sit"))
    _class_tree(tmp_path / "val", ("run", "jump", "sit"), per_class=1)
    train = _build(tmp_path, "train")
    assert train.layout == "folder-split" and train.classes == ["jump", "run", "sit"]
    assert len(train) == 6 and train.class_counts() == [2, 2, 2]
    clip, label = train[0]
    assert clip.shape == (3, 4, SIZE, SIZE) and label == 0
    assert _frame_indices(clip) == [2, 4, 6, 8]  # centred dense clip of 12 frames: span 7, start 2
    assert len(_build(tmp_path, "val")) == 3
    with pytest.raises(EdgevidError, match="'test'"):
        find_split(tmp_path, "test")


def test_plain_class_folders_hold_out_a_stable_val_part(tmp_path):
    _class_tree(tmp_path, ("a", "b"), per_class=5)
    train, val, every = (find_split(tmp_path, s) for s in ("train", "val", "all"))
    assert train.layout == "folder"
    paths = [{str(e[0]) for e in split.entries} for split in (train, val, every)]
    assert not paths[0] & paths[1] and paths[0] | paths[1] == paths[2] and len(paths[2]) == 10
    assert sorted(label for _, label, _, _ in val.entries) == ["a", "b"]
    assert find_split(tmp_path, "val").entries == val.entries


def test_empty_class_folder_is_an_error_naming_it(tmp_path):
    _class_tree(tmp_path / "train", ("a",))
    (tmp_path / "train" / "empty_class").mkdir()
    with pytest.raises(EdgevidError, match="empty_class"):
        find_split(tmp_path, "train")


def test_list_files_with_header_relative_paths_and_segments(tmp_path):
    _flat_video(tmp_path / "clips" / "long.mp4", count=60)
    _flat_video(tmp_path / "clips" / "other.mp4", count=12)
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "train.csv").write_text(
        "path,label,start,end\n../clips/long.mp4,wave,1.0,1.6\n../clips/other.mp4,clap,,\n"
    )
    data = _build(tmp_path / "lists" / "train.csv")
    assert data.layout == "list" and data.classes == ["clap", "wave"]
    clip, label = data[0]
    assert label == 1
    assert _frame_indices(clip) == [29, 31, 33, 35]  # segment = frames 25..39, centred span of 7 starts at 29
    (tmp_path / "val.tsv").write_text("clips/other.mp4\tclap\nclips/long.mp4\twave\n")
    assert [s.label for s in _build(tmp_path, "val").samples] == [0, 1]


def test_classes_txt_order_forced_classes_and_unknown_labels(tmp_path):
    _flat_video(tmp_path / "x.mp4", count=8)
    (tmp_path / "train.csv").write_text("x.mp4,zebra\nx.mp4,apple\n")
    (tmp_path / "classes.txt").write_text("zebra\napple\nmango\n")
    data = _build(tmp_path)
    assert data.classes == ["zebra", "apple", "mango"] and [s.label for s in data.samples] == [0, 1]
    forced = _build(tmp_path, classes=["apple", "zebra"])
    assert [s.label for s in forced.samples] == [1, 0]
    with pytest.raises(EdgevidError, match="unknown label 'zebra'"):
        _build(tmp_path, classes=["apple", "pear"])
    (tmp_path / "val.csv").write_text("x.mp4,durian\n")
    with pytest.raises(EdgevidError, match="unknown label 'durian'"):
        _build(tmp_path, "val")


def test_kinetics_csv_resolves_downloader_file_names(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        "playing cards,abc123,10,20,train,0\n"
        "juggling,xyz_9-k,0,10,train,0\n"
    )
    _flat_video(tmp_path / "train" / "playing_cards" / "abc123_000010_000020.mp4")
    _flat_video(tmp_path / "train" / "juggling" / "xyz_9-k_000000_000010.mp4")
    data = _build(tmp_path, "train")
    assert data.layout == "kinetics" and data.classes == ["juggling", "playing cards"]
    assert all(s.path.is_file() for s in data.samples)
    assert [s.label for s in data.samples] == [1, 0]
    assert data[0][0].shape == (3, 4, SIZE, SIZE)


def test_ucf101_split_files(tmp_path):
    lists = tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 YoYo\n2 ApplyLipstick\n")
    (lists / "trainlist01.txt").write_text("YoYo/v_YoYo_g01_c01.avi 1\nApplyLipstick/v_ApplyLipstick_g01_c01.avi 2\n")
    (lists / "testlist01.txt").write_text("ApplyLipstick/v_ApplyLipstick_g02_c01.avi\n")
    for name in ("YoYo/v_YoYo_g01_c01", "ApplyLipstick/v_ApplyLipstick_g01_c01",
                 "ApplyLipstick/v_ApplyLipstick_g02_c01"):
        _flat_video(tmp_path / "UCF-101" / f"{name}.avi", count=8)
    train = _build(tmp_path, "train")
    assert train.layout == "ucf101" and train.classes == ["YoYo", "ApplyLipstick"]
    assert [s.label for s in train.samples] == [0, 1]
    test = _build(tmp_path, "val")
    assert [s.label for s in test.samples] == [1] and test.source.name == "testlist01.txt"
    with pytest.raises(EdgevidError, match="trainlist02"):
        find_split(tmp_path, "train2")


def test_test_views_and_training_clips(tmp_path):
    _flat_video(tmp_path / "a" / "wide.mp4", count=40, width=48, height=32)
    (tmp_path / "train.csv").write_text("a/wide.mp4,a\n")
    views = _build(tmp_path, views=(3, 2))
    clips, _ = views[0]
    assert clips.shape == (6, 3, 4, SIZE, SIZE)
    assert _frame_indices(clips[0]) == [0, 2, 4, 6] and _frame_indices(clips[5]) == [33, 35, 37, 39]
    trained = _build(tmp_path, train=True, frames=8, size=24)
    clip, label = trained[0]
    assert clip.shape == (3, 8, 24, 24) and label == 0
    steps = np.diff(_frame_indices(clip))
    assert np.all(steps == 2)
    with pytest.raises(EdgevidError, match="evaluation"):
        _build(tmp_path, train=True, views=(3, 1))


def test_loader_skips_and_reports_corrupt_videos(tmp_path):
    _class_tree(tmp_path / "train", ("a", "b"))
    corrupt = tmp_path / "train" / "b" / "broken.mp4"
    corrupt.write_bytes(b"not a video at all" * 100)
    data = _build(tmp_path, train=True)
    assert len(data) == 5
    broken = next(i for i, s in enumerate(data.samples) if s.path == corrupt)
    assert data[broken] is None
    batches = list(build_loader(data, batch_size=2, shuffle=True, workers=0, seed=3))
    clips = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    skipped = [item for b in batches for item in b[2]]
    assert clips.shape == (4, 3, 4, SIZE, SIZE) and clips.dtype == torch.float32 and labels.dtype == torch.int64
    assert sorted(labels.tolist()) == [0, 0, 1, 1]
    assert len(skipped) == 1 and skipped[0][0] == str(corrupt) and "unreadable" in skipped[0][1]
    strict = _build(tmp_path, train=True, strict=True)
    with pytest.raises(EdgevidError, match=r"broken\.mp4"):
        strict[broken]


def test_loader_order_and_augmentation_depend_only_on_seed_and_epoch(tmp_path):
    _class_tree(tmp_path / "train", ("a", "b"), per_class=2)
    data = _build(tmp_path, train=True, augment=AugmentConfig(scale=(0.2, 1.0), color_jitter=0.5))

    def epochs(workers, count=2, start=None):
        loader = build_loader(data, 2, shuffle=True, workers=workers, seed=7)
        if start is not None:
            loader.sampler.set_epoch(start)
        return [torch.cat([b[0] for b in loader]) for _ in range(count)]

    single, pooled = epochs(0), epochs(2)
    assert all(torch.equal(x, y) for x, y in zip(single, pooled, strict=True))
    assert not torch.equal(single[0], single[1])  # a new epoch draws new clips and augmentations
    assert torch.equal(epochs(0, count=1, start=1)[0], single[1])  # resuming at epoch 1 repeats epoch 1


def test_cached_videos_give_the_same_clips_and_corrupt_ones_are_still_skipped(tmp_path):
    _class_tree(tmp_path / "train", ("a", "b"), per_class=2)
    (tmp_path / "train" / "b" / "broken.mp4").write_bytes(b"not a video" * 50)
    augment = AugmentConfig(scale=(0.2, 1.0), color_jitter=0.5)
    plain = _build(tmp_path, train=True, augment=augment)
    cached = _build(tmp_path, train=True, augment=augment, cache_gb=0.01)

    def two_epochs(data):
        loader = build_loader(data, 2, shuffle=True, workers=0, seed=5)
        return [[(b[0], b[1], b[2]) for b in loader] for _ in range(2)]

    for plain_epoch, cached_epoch in zip(two_epochs(plain), two_epochs(cached), strict=True):
        for (x, y, skipped), (cx, cy, cskipped) in zip(plain_epoch, cached_epoch, strict=True):
            assert torch.equal(x, cx) and torch.equal(y, cy) and len(skipped) == len(cskipped)
    assert cached._videos.nbytes == 4 * 12 * SIZE * SIZE * 3  # four readable videos of 12 frames, decoded once
    with pytest.raises(EdgevidError, match="cache_gb"):
        _build(tmp_path, cache_gb=-1)


def test_distributed_loader_uses_a_distributed_sampler(tmp_path):
    _class_tree(tmp_path / "train", ("a", "b"), per_class=2)
    data = _build(tmp_path, train=True)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        loader = build_loader(data, 2, shuffle=True, workers=0, distributed=True)
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)
        loader.sampler.set_epoch(1)
        assert sum(len(b[1]) for b in loader) == 4
    finally:
        dist.destroy_process_group()


def test_dataset_info_counts(tmp_path):
    _class_tree(tmp_path / "train", ("a", "b"), per_class=2)
    _class_tree(tmp_path / "val", ("a", "b"), per_class=1)
    info = dataset_info(tmp_path)
    assert info["classes"] == ["a", "b"] and set(info["splits"]) == {"train", "val"}
    assert info["counts"] == {"a": {"train": 2, "val": 1}, "b": {"train": 2, "val": 1}}
    with pytest.raises(EdgevidError, match="not found"):
        dataset_info(tmp_path / "nope")


def test_clip_seconds_give_clips_of_equal_time_on_videos_of_different_fps(tmp_path):
    _flat_video(tmp_path / "a" / "slow.mp4", count=30, fps=15)  # both 2 s long
    _flat_video(tmp_path / "a" / "fast.mp4", count=60, fps=30)
    (tmp_path / "train.csv").write_text("a/slow.mp4,a\na/fast.mp4,a\n")
    seconds = _build(tmp_path, clip_seconds=1.6)  # 4 frames: every 6th frame at 15 fps, every 12th at 30 fps
    slow, fast = (_frame_indices(seconds[i][0]) for i in range(2))
    assert np.diff(slow).tolist() == [6, 6, 6] and np.diff(fast).tolist() == [12, 12, 12]
    assert (slow[-1] - slow[0]) / 15 == (fast[-1] - fast[0]) / 30 == pytest.approx(1.2)
    assert abs(slow[0] / 15 - fast[0] / 30) <= 1 / 15  # both centred in the 2 s
    trained = _build(tmp_path, clip_seconds=1.6, train=True)
    for _ in range(3):
        slow, fast = (_frame_indices(trained[i][0]) for i in range(2))
        assert np.diff(slow).tolist() == [6, 6, 6] and np.diff(fast).tolist() == [12, 12, 12]
    jittered = _build(tmp_path, clip_seconds=1.6, train=True, augment=AugmentConfig(stride_jitter=0.3, flip=False))
    spans = {tuple(np.diff(_frame_indices(jittered.load(1, seed=(0, 0, k))[0]))) for k in range(6)}
    assert len(spans) > 1  # stride jitter still applies on top of the per-video stride
    frames_stride = _build(tmp_path)  # no clip_seconds: 2 frames apart whatever the fps
    assert np.diff(_frame_indices(frames_stride[0][0])).tolist() == [2, 2, 2]
    assert np.diff(_frame_indices(frames_stride[1][0])).tolist() == [2, 2, 2]
    longer = _build(tmp_path, clip_seconds=4.0)  # longer than both videos: spread over each, never looping
    for i, count in enumerate((30, 60)):
        indices = _frame_indices(longer[i][0])
        assert indices[0] == 0 and indices[-1] == count - 1 and np.all(np.diff(indices) > 0)
