# Copyright (c) mmsniper contributors. All rights reserved.
"""Box validation and the candidate chip grid (SNIPER spec, section 2).

Conventions used by the whole ``mmsniper.chips`` package:

* Boxes and chips are continuous xyxy: a chip at scaled origin ``x`` spans
  ``[x, x + chip_size]``. A box is *inside* a chip iff
  ``chip.x1 <= box.x1 and box.x2 <= chip.x2`` (same for y).
* The scaled image is the continuous rectangle ``[0, w * s] x [0, h * s]``
  (its extents are not rounded). Grid origins are integers; the chip flush
  with the far edge ends exactly at ``w * s``, so every chip maps back
  inside the original image. (With a rounded extent, ``round(w * s)``, the
  flush chip could stick out by up to ``0.5 / s`` orig px, or miss a box
  that touches the image edge; chips are cropped from the original image,
  so nothing needs the rounded size.)
* An image extent within :data:`FIT_TOLERANCE` of the chip size, or
  smaller, gets a single chip along that axis, truncated to the image.
"""
import functools
import math

import numpy as np

__all__ = [
    'FIT_TOLERANCE', 'check_bboxes', 'check_chip_params', 'clip_bboxes',
    'axis_origins_and_ends', 'candidate_chip_origins', 'candidate_chips',
    'containment_matrix'
]

#: Slack, in scaled pixels, under which an image extent counts as fitting
#: in one chip (absorbs float error of ``long_cap / long_side * long_side``).
FIT_TOLERANCE = 1e-6


def check_bboxes(bboxes, name='gt_bboxes') -> np.ndarray:
    """Validate boxes.

    Args:
        bboxes (ArrayLike): ``(N, 4)`` finite xyxy boxes; an empty
            sequence means no box.
        name (str): Name used in error messages.

    Returns:
        np.ndarray: ``(N, 4)`` float64 boxes.
    """
    try:
        boxes = np.asarray(bboxes, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f'{name} must be an (N, 4) array of numbers: '
                         f'{error}') from None
    if boxes.shape == (0, ):
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f'{name} must have shape (N, 4), got {boxes.shape}')
    if not np.isfinite(boxes).all():
        raise ValueError(f'{name} must be finite (found NaN or inf)')
    return boxes


def check_chip_params(chip_size, stride) -> tuple:
    """Validate the chip size and the grid stride.

    Args:
        chip_size (int): Side of a square chip in scaled pixels.
        stride (int): Step of the candidate grid in scaled pixels.

    Returns:
        tuple[int, int]: ``(chip_size, stride)``.
    """
    checked = []
    for name, value in (('chip_size', chip_size), ('stride', stride)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, (int, np.integer)) or value <= 0:
            raise ValueError(f'{name} must be a positive integer, got '
                             f'{value!r}')
        checked.append(int(value))
    return tuple(checked)


def clip_bboxes(bboxes, image_size) -> np.ndarray:
    """Clip boxes to the image.

    Args:
        bboxes (np.ndarray): ``(N, 4)`` boxes, xyxy.
        image_size (Sequence[float]): ``(height, width)``.

    Returns:
        np.ndarray: ``(N, 4)`` float64 clipped copy.
    """
    height, width = image_size
    upper = np.array([width, height, width, height], dtype=np.float64)
    return np.minimum(np.maximum(bboxes, 0.0), upper)


@functools.lru_cache(maxsize=4096)
def axis_origins_and_ends(scaled_extent, chip_size, stride) -> tuple:
    """Chip origins and ends along one axis of the scaled image.

    Cached (data sets repeat image sizes); the arrays are read-only.

    Args:
        scaled_extent (float): Image extent along the axis, scaled px.
        chip_size (int): Chip side, scaled px.
        stride (int): Grid step, scaled px.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(origins, ends)``, both sorted
        float64. ``ends`` is ``origins + chip_size``, except that the chip
        flush with the far edge ends exactly at ``scaled_extent`` and a
        single chip of a small image is truncated to it.
    """
    last_origin = scaled_extent - chip_size
    if last_origin <= FIT_TOLERANCE:
        origins, ends = np.zeros(1), np.array([float(scaled_extent)])
        origins.flags.writeable = ends.flags.writeable = False
        return origins, ends
    # Grid origins k * stride < last_origin (near-duplicates of the flush
    # origin, closer than FIT_TOLERANCE, are left out).
    num_grid = math.ceil((last_origin - FIT_TOLERANCE) / stride)
    origins = np.arange(num_grid + 1, dtype=np.float64) * stride
    origins[-1] = last_origin
    ends = origins + chip_size
    ends[-1] = scaled_extent
    origins.flags.writeable = ends.flags.writeable = False
    return origins, ends


def candidate_chip_origins(scaled_extent: float, chip_size: int,
                           stride: int) -> np.ndarray:
    """Candidate chip origins along one axis.

    Args:
        scaled_extent (float): Image extent along the axis, scaled px.
        chip_size (int): Chip side, scaled px.
        stride (int): Grid step, scaled px.

    Returns:
        np.ndarray: Sorted unique float64 origins ``0, stride, ...`` below
        ``scaled_extent - chip_size``, then ``scaled_extent - chip_size``
        (flush with the far edge); ``[0]`` when the extent fits in a chip.
    """
    chip_size, stride = check_chip_params(chip_size, stride)
    return axis_origins_and_ends(float(scaled_extent), chip_size,
                                 stride)[0].copy()


def candidate_chips(scaled_size, chip_size, stride) -> np.ndarray:
    """All candidate chips of a scaled image.

    Args:
        scaled_size (Sequence[float]): ``(height, width)`` of the scaled
            image, i.e. ``(h * s, w * s)``.
        chip_size (int): Chip side, scaled px.
        stride (int): Grid step, scaled px.

    Returns:
        np.ndarray: ``(K, 4)`` float64 xyxy chips in scaled px, in raster
        order (rows of chips top to bottom, left to right within a row).
        A chip is truncated only along an axis where the image is smaller
        than the chip.
    """
    chip_size, stride = check_chip_params(chip_size, stride)
    scaled_height, scaled_width = (float(side) for side in scaled_size)
    if not (scaled_height > 0 and scaled_width > 0):
        raise ValueError(f'scaled_size must be positive, got {scaled_size}')
    x_origins, x_ends = axis_origins_and_ends(scaled_width, chip_size, stride)
    y_origins, y_ends = axis_origins_and_ends(scaled_height, chip_size, stride)
    num_x, num_y = len(x_origins), len(y_origins)
    return np.stack([
        np.tile(x_origins, num_y),
        np.repeat(y_origins, num_x),
        np.tile(x_ends, num_y),
        np.repeat(y_ends, num_x)
    ],
                    axis=1)


def containment_matrix(chips, boxes) -> np.ndarray:
    """Which chips contain which boxes entirely.

    Args:
        chips (np.ndarray): ``(K, 4)`` chips, xyxy.
        boxes (np.ndarray): ``(N, 4)`` boxes, xyxy, same coordinates.

    Returns:
        np.ndarray: ``(K, N)`` bool, True where the box lies inside the
        chip (borders included).
    """
    return ((chips[:, None, 0] <= boxes[None, :, 0])
            & (chips[:, None, 1] <= boxes[None, :, 1])
            & (boxes[None, :, 2] <= chips[:, None, 2])
            & (boxes[None, :, 3] <= chips[:, None, 3]))
