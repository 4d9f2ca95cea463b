"""Video data: decoding, dataset layouts, temporal sampling, clip augmentation, synthetic benchmark data."""

from edgevid.data.datasets import (
    ClipDataset,
    ClipSampler,
    DataSplit,
    SkippedVideo,
    VideoSample,
    build_dataset,
    build_loader,
    collate_clips,
    find_split,
)
from edgevid.data.decode import VideoDecodeError, VideoInfo, VideoReader, probe, read_clip
from edgevid.data.transforms import AugmentConfig, ClipAugment, eval_transform, mix_batch, normalize

__all__ = [
    "AugmentConfig",
    "ClipAugment",
    "ClipDataset",
    "ClipSampler",
    "DataSplit",
    "SkippedVideo",
    "VideoDecodeError",
    "VideoInfo",
    "VideoReader",
    "VideoSample",
    "build_dataset",
    "build_loader",
    "collate_clips",
    "eval_transform",
    "find_split",
    "mix_batch",
    "normalize",
    "probe",
    "read_clip",
]
