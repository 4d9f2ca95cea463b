"""``edgevid predict``: class labels and scores of one video, from any artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevid.data import ClipDataset, VideoSample
from edgevid.data.decode import VIDEO_EXTENSIONS
from edgevid.errors import EdgevidError
from edgevid.runtime import load
from edgevid.train.metrics import softmax


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file()


def predict_video(artifact: str | Path, video: str | Path, topk: int = 5, views: tuple[int, int] = (1, 1),
                  device: str = "cpu", threads: int | None = None) -> list[tuple[str, float]]:
    """The ``topk`` (label, probability) pairs for ``video``, best first.

    The video is sampled and preprocessed exactly as ``edgevid eval`` does (the artifact's frames, size, stride,
    sampling mode, mean/std; ``views`` clips x crops with softmax averaged over them). Frame and dense heads are
    averaged over their positions.
    """

    if topk < 1:
        raise EdgevidError(f"--topk: expected a positive number, got {topk}")
    video = Path(video)
    if _is_video(Path(artifact)) and not _is_video(video):
        raise EdgevidError(f"the arguments look swapped: {artifact} is a video and {video} is not; the model comes "
                           f"first: edgevid predict {video} {artifact}")
    if video.is_dir():
        raise EdgevidError(f"{video}: is a folder, expected a video file (edgevid predict ARTIFACT VIDEO: the "
                           "model comes first)")
    if not video.is_file():
        raise EdgevidError(f"{video}: no such video file")
    predictor = load(artifact, device=device, threads=threads)
    meta = predictor.meta
    if meta.head == "features":
        raise EdgevidError(f"{artifact}: a 'features' head artifact has no class scores to predict")
    dataset = ClipDataset([VideoSample(video, 0)], meta.classes, layout="file", source=video, frames=meta.frames,
                          size=meta.size, sampling_stride=meta.sampling_stride, mean=meta.mean, std=meta.std,
                          train=False, sampling=meta.sampling, views=views, strict=True,
                          clip_seconds=meta.clip_seconds, fit=meta.fit)
    clips, _ = dataset.load(0)
    batch = clips.reshape(-1, *clips.shape[-4:]).numpy()
    scores = predictor.predict(batch)
    probs = softmax(scores.astype(np.float64), axis=1)
    mean = probs.reshape(probs.shape[0], meta.num_classes, -1).mean(axis=(0, 2))
    order = np.argsort(-mean, kind="stable")[: min(topk, meta.num_classes)]
    return [(meta.classes[i], float(mean[i])) for i in order]
