"""Shape arithmetic so each model sizes its classifier for the data it is given.

Flatten sizes are computed, not measured with a dummy forward: a forward pass in training
mode would move BatchNorm running statistics, and the models must be built identically
whatever mode or device the caller uses.
"""

from __future__ import annotations

from ..errors import ShapeError


def image_dims(model: str, input_shape: tuple[int, ...], num_classes: int) -> tuple[int, int, int]:
    """Validate ``(C, H, W)`` and the class count; return them as ints."""
    if len(input_shape) != 3 or any(int(v) < 1 for v in input_shape):
        raise ShapeError(
            f"model {model!r} needs an image input_shape (C, H, W), got {tuple(input_shape)}"
        )
    check_classes(model, num_classes)
    c, h, w = (int(v) for v in input_shape)
    return c, h, w


def check_classes(model: str, num_classes: int) -> None:
    if int(num_classes) < 1:
        raise ShapeError(f"model {model!r}: num_classes must be >= 1, got {num_classes}")


def conv_out(size: int, *, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution / pooling along one axis (PyTorch floor rule)."""
    return (size + 2 * padding - kernel) // stride + 1


def require_positive(model: str, what: str, size: int, input_shape: tuple[int, ...]) -> None:
    if size < 1:
        raise ShapeError(f"model {model!r}: input {tuple(input_shape)} is too small ({what} is {size})")


def flat_size(model: str, input_shape: tuple[int, ...], num_classes: int) -> int:
    """Number of input features of a model that flattens its input (any shape, e.g. tabular)."""
    if len(input_shape) < 1 or any(int(v) < 1 for v in input_shape):
        raise ShapeError(f"model {model!r}: invalid input_shape {tuple(input_shape)}")
    check_classes(model, num_classes)
    size = 1
    for v in input_shape:
        size *= int(v)
    return size
