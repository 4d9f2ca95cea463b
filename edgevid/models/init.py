"""The one weight initialisation the zoo's families share (torchvision's and PyTorchVideo's "resnet" init)."""

from __future__ import annotations

from torch import nn

CONVS = (nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm2d, nn.BatchNorm3d)


def init_weights(model: nn.Module, linear_std: float | None = 0.01) -> None:
    """Kaiming-normal (fan_out, ReLU gain) convs with zero biases, unit BatchNorms, and linear layers drawn from
    N(0, ``linear_std``) with zero biases (``None``: linear layers keep PyTorch's default initialisation)."""
    for m in model.modules():
        if isinstance(m, CONVS):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, NORMS):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            init_linear(m, linear_std)


def init_linear(layer: nn.Linear, std: float | None) -> None:
    """N(0, ``std``) weights and a zero bias (``None``: PyTorch's default initialisation of a linear layer)."""
    if std is None:
        layer.reset_parameters()
        return
    nn.init.normal_(layer.weight, 0, std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
