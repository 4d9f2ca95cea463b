"""The model zoo. Importing this package registers every family."""

from edgevid.models import c3d, i3d, p3d, slowfast, tiny3d, tsm, video_resnet, x3d  # noqa: F401  (registers)
from edgevid.models.base import HEAD_KINDS, VideoHead, VideoModel, int8_graph
from edgevid.models.registry import (
    ModelSpec,
    count_macs,
    count_params,
    create_model,
    get_spec,
    list_models,
    register_model,
)

__all__ = [
    "HEAD_KINDS",
    "ModelSpec",
    "VideoHead",
    "VideoModel",
    "count_macs",
    "count_params",
    "create_model",
    "get_spec",
    "int8_graph",
    "list_models",
    "register_model",
]
