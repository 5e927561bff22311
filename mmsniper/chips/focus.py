# Copyright (c) mmsniper contributors. All rights reserved.
"""AutoFocus geometry (SNIPER spec, section 7): FocusPixel labels and
FocusChips. numpy (+ ``scipy.ndimage`` for connected regions), no torch or
mmdet import.

*FocusPixel labels* mark, on the stride grid of a training chip, the cells
covered by small objects (1), the cells to ignore (-1: tiny objects and
objects between "small" and "large") and the rest (0). *FocusChips* are the
regions of an image (or of a parent chip) that the next, finer scale has to
look at: the bounding boxes of the connected regions of the thresholded and
dilated focus map, grown to a minimum size and merged until none overlap.

Connected regions are labelled with ``scipy.ndimage.label`` (C, 8-connected
like OpenCV's contours in the reference): a numpy flood fill is orders of
magnitude slower on a 1000 x 1000 map.
"""
import math
import warnings

import numpy as np

__all__ = [
    'focus_pixel_labels', 'generate_focus_chips',
    'FOCUS_POSITIVE', 'FOCUS_IGNORE', 'FOCUS_NEGATIVE'
]

#: Label of a cell covered by a small object.
FOCUS_POSITIVE = 1
#: Label of a cell to leave out of the loss.
FOCUS_IGNORE = -1
#: Label of every other cell.
FOCUS_NEGATIVE = 0


def _check_boxes(bboxes) -> np.ndarray:
    boxes = np.asarray(bboxes, dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError('bboxes must have shape (N, 4) (x1, y1, x2, y2), '
                         f'got {boxes.shape}')
    if not np.isfinite(boxes).all():
        raise ValueError('bboxes must be finite')
    return boxes


def _check_positive_int(name, value) -> int:
    if isinstance(value, (bool, np.bool_)) or int(value) != value \
            or value < 1:
        raise ValueError(f'{name} must be a positive integer, got {value!r}')
    return int(value)


def focus_pixel_labels(bboxes,
                       map_size,
                       stride: int = 16,
                       positive_range=(5, 64),
                       ignore_upper: float = 90) -> np.ndarray:
    """FocusPixel labels of one chip.

    A box's band is decided by its sqrt-area ``a`` in chip pixels, as in the
    reference (``lib/data_utils/data_workers.py``, ``gen_mask``): ``lo < a <
    hi`` (``positive_range=(lo, hi)``) marks its cells 1; ``hi <= a <
    ignore_upper`` or ``a <= lo`` marks them -1; larger boxes mark nothing.
    A box covers the cells ``floor(x1 / stride)`` to ``ceil(x2 / stride)``,
    both included (the reference's ``range(x1, x2 + 1)``), clipped to the map.

    Where boxes of different bands cover the same cell, 1 wins over -1 (a
    small object needs the finer scale whatever else is there). The
    reference writes the boxes one after the other, so there the last box
    wins, which depends on the annotation order.

    Args:
        bboxes (array-like): ``(N, 4)`` boxes ``(x1, y1, x2, y2)`` in chip
            pixels: every GT of the chip after scaling and clipping, before
            the small-piece filter.
        map_size (tuple[int, int]): ``(height, width)`` of the label map in
            cells (``chip_size / stride``, 32 x 32 for a 512 chip).
        stride (int): Cell size in chip pixels. Defaults to 16.
        positive_range (tuple[float, float]): ``(lo, hi)`` sqrt-area band,
            exclusive, of the positive boxes. Defaults to (5, 64).
        ignore_upper (float): Boxes with ``hi <= a < ignore_upper`` are
            ignored. Defaults to 90.

    Returns:
        np.ndarray: ``(height, width)`` int8 map of 1, 0 and -1.
    """
    boxes = _check_boxes(bboxes)
    stride = _check_positive_int('stride', stride)
    height, width = (_check_positive_int('map_size', side)
                     for side in map_size)
    lo, hi = (float(v) for v in positive_range)
    if not 0 <= lo < hi <= ignore_upper:
        raise ValueError('need 0 <= positive_range[0] < positive_range[1] '
                         f'<= ignore_upper, got positive_range='
                         f'{positive_range!r}, ignore_upper={ignore_upper!r}')
    labels = np.zeros((height, width), dtype=np.int8)
    if not len(boxes):
        return labels
    side_w = np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
    side_h = np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    area = np.sqrt(side_w * side_h)
    positive = (area > lo) & (area < hi)
    ignore = ((area >= hi) & (area < ignore_upper)) | (area <= lo)

    cx1 = np.clip(np.floor(boxes[:, 0] / stride), 0, width).astype(np.int64)
    cy1 = np.clip(np.floor(boxes[:, 1] / stride), 0, height).astype(np.int64)
    # Inclusive end cell ceil(x2 / stride), as an exclusive bound + 1.
    cx2 = np.clip(np.ceil(boxes[:, 2] / stride) + 1, 0,
                  width).astype(np.int64)
    cy2 = np.clip(np.ceil(boxes[:, 3] / stride) + 1, 0,
                  height).astype(np.int64)

    def coverage(keep):
        """Cells covered by the kept boxes (2-D difference array)."""
        diff = np.zeros((height + 1, width + 1), dtype=np.int64)
        ys1, ys2, xs1, xs2 = cy1[keep], cy2[keep], cx1[keep], cx2[keep]
        np.add.at(diff, (ys1, xs1), 1)
        np.add.at(diff, (ys1, xs2), -1)
        np.add.at(diff, (ys2, xs1), -1)
        np.add.at(diff, (ys2, xs2), 1)
        return diff.cumsum(0).cumsum(1)[:height, :width] > 0

    labels[coverage(ignore)] = FOCUS_IGNORE
    labels[coverage(positive)] = FOCUS_POSITIVE
    return labels


def _dilate(mask: np.ndarray, size: int) -> np.ndarray:
    """Binary dilation with a ``size x size`` square, anchored at its centre
    like ``cv2.dilate`` (offsets ``-(size // 2)`` to ``size - 1 - size //
    2``)."""
    if size == 1:
        return mask.copy()
    before = size // 2
    after = size - 1 - before
    # Separable: a square's max is the max along rows then along columns.
    # Output cell i reads input cells i - before .. i + after, so the pad
    # is ``before`` cells first (even sizes: one more after than before).
    out = np.pad(mask, ((0, 0), (before, after)))
    out = np.lib.stride_tricks.sliding_window_view(out, size, axis=1)
    out = out.any(axis=-1)
    out = np.pad(out, ((before, after), (0, 0)))
    out = np.lib.stride_tricks.sliding_window_view(out, size, axis=0)
    return out.any(axis=-1)


def _region_boxes(mask: np.ndarray, holes: bool = False) -> np.ndarray:
    """Cell bounding boxes ``(x1, y1, x2, y2)`` (end exclusive) of the
    8-connected regions of ``mask``; with ``holes``, also one box per hole
    (a 4-connected background region that does not reach the map border),
    the box of the cells around it, as the bounding rectangle of the hole
    contour that ``cv2.findContours(..., cv2.RETR_LIST, ...)`` returns."""
    from scipy import ndimage
    labelled, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    boxes = [[sx.start, sy.start, sx.stop, sy.stop]
             for sy, sx in ndimage.find_objects(labelled)] if count else []
    if holes and count:
        height, width = mask.shape
        background, _ = ndimage.label(~mask)  # 4-connected
        for sy, sx in ndimage.find_objects(background):
            if (sy.start == 0 or sx.start == 0 or sy.stop == height
                    or sx.stop == width):
                continue  # reaches the border: outside, not a hole
            boxes.append(
                [sx.start - 1, sy.start - 1, sx.stop + 1, sy.stop + 1])
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def _grow_and_shift(boxes: np.ndarray, min_size: int, cells_h: int,
                    cells_w: int) -> np.ndarray:
    """Grow integer cell boxes to ``min_size`` about their centre and shift
    them inside the ``cells_h x cells_w`` grid (the reference's integer
    arithmetic: centre ``(2 * x1 + w) // 2``, start ``centre - w // 2``; a
    box larger than the grid starts at 0)."""
    out = np.empty_like(boxes)
    for axis, limit in ((0, cells_w), (1, cells_h)):
        lo, hi = boxes[:, axis], boxes[:, axis + 2]
        size = np.maximum(hi - lo, min_size)
        centre = (lo + hi) // 2
        start = np.clip(centre - size // 2, 0, np.maximum(limit - size, 0))
        out[:, axis] = start
        out[:, axis + 2] = start + size
    return out


def _paint(mask: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``mask`` with every cell box set (2-D difference array)."""
    height, width = mask.shape
    diff = np.zeros((height + 1, width + 1), dtype=np.int64)
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2 = np.minimum(boxes[:, 2], width)
    y2 = np.minimum(boxes[:, 3], height)
    np.add.at(diff, (y1, x1), 1)
    np.add.at(diff, (y1, x2), -1)
    np.add.at(diff, (y2, x1), -1)
    np.add.at(diff, (y2, x2), 1)
    return mask | (diff.cumsum(0).cumsum(1)[:height, :width] > 0)


def generate_focus_chips(focus_map,
                         threshold: float,
                         dilation: int,
                         min_size: int,
                         image_size,
                         stride: int = 16,
                         parent_offset=(0.0, 0.0),
                         scale: float = 1.0,
                         holes: bool = False) -> np.ndarray:
    """FocusChips of the next scale from one focus map.

    The map is the focus head's foreground probability on the ``stride``
    grid of a region (the whole image, or a parent FocusChip) seen at
    ``scale``. As in the reference (``lib/chips/chips_inference.py``,
    ``gmask``): cells ``>= threshold`` are set, the mask is dilated with a
    ``dilation x dilation`` square, and each 8-connected region's bounding
    box grows to ``min_size`` cells about its centre and shifts inside the
    region; the boxes are painted into the mask and the regions found
    again, so overlapping or touching boxes merge, until their number stops
    changing. Boxes live on the cell grid; in pixels, a box reaching past
    the region's far edge is cut there and its near edge moved back to keep
    ``min_size`` cells where the region allows.

    The reference finds the regions with ``cv2.findContours(...,
    cv2.RETR_LIST, ...)``, which returns the contours of the holes of a
    region too: each hole's box is grown and painted like a region's, and a
    hole left at the end is a chip of its own, inside its region's chip.
    ``holes=False`` (the default) takes the regions only; ``holes=True``
    reproduces the reference. The map itself is cropped to the region's
    cells before thresholding; the reference thresholds the whole network
    output, padding included.

    Args:
        focus_map (np.ndarray): ``(H, W)`` probabilities. A map larger than
            the region's cells (padding of the network input) is cropped to
            ``ceil(scaled size / stride)`` cells; one that covers the region
            as the detector saw it (rounded to whole pixels) but not its
            last fraction of a pixel is padded with zeros.
        threshold (float): Probability at which a cell is set.
        dilation (int): Side of the square dilation kernel, in cells.
        min_size (int): Minimum chip side, in cells.
        image_size (tuple[float, float]): ``(height, width)`` of the region
            in original pixels.
        stride (int): Cell size in pixels at ``scale``. Defaults to 16.
        parent_offset (tuple[float, float]): ``(x, y)`` of the region's
            top-left corner in the original image. Defaults to (0, 0).
        scale (float): Factor from original pixels to the map's pixels.
            Defaults to 1.
        holes (bool): Also take the holes of the regions, as the
            reference's ``cv2.RETR_LIST`` contours do. Defaults to False.

    Returns:
        np.ndarray: ``(N, 4)`` float64 chips ``(x1, y1, x2, y2)`` in original
        image pixels, sorted by ``(y1, x1)``.
    """
    fmap = np.asarray(focus_map, dtype=np.float64)
    if fmap.ndim != 2:
        raise ValueError(f'focus_map must be 2-D, got shape {fmap.shape}')
    stride = _check_positive_int('stride', stride)
    dilation = _check_positive_int('dilation', dilation)
    min_size = _check_positive_int('min_size', min_size)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f'scale must be positive and finite, got {scale!r}')
    if not (isinstance(threshold, (int, float, np.number))
            and 0 <= threshold <= 1):
        # a probability threshold: above 1 (or NaN) no cell is ever set and
        # the finer scales would process nothing
        raise ValueError(f'threshold must be a probability in [0, 1], got '
                         f'{threshold!r}')
    height, width = (float(v) for v in image_size)
    if not (height > 0 and width > 0):
        raise ValueError(f'image_size must be positive, got {image_size!r}')
    scaled_h, scaled_w = height * scale, width * scale
    cells_h = math.ceil(scaled_h / stride - 1e-9)
    cells_w = math.ceil(scaled_w / stride - 1e-9)
    # The detector saw the region resized to whole pixels (mmcv rounds:
    # int(x + 0.5)); its map may stop there, a fraction of a pixel short of
    # the last cell (e.g. 272.38 px: 17 cells seen, 18 needed). That
    # sliver got no prediction: it is zero, not an error.
    seen_h = math.ceil(max(1, int(scaled_h + 0.5)) / stride)
    seen_w = math.ceil(max(1, int(scaled_w + 0.5)) / stride)
    if (fmap.shape[0] < min(cells_h, seen_h)
            or fmap.shape[1] < min(cells_w, seen_w)):
        raise ValueError(
            f'focus_map of shape {fmap.shape} does not cover a region of '
            f'{scaled_w:.2f} x {scaled_h:.2f} px at stride {stride} (needs '
            f'{min(cells_h, seen_h)} x {min(cells_w, seen_w)} cells)')
    fmap = fmap[:cells_h, :cells_w]
    nan_cells = int(np.isnan(fmap).sum())
    if nan_cells:
        warnings.warn(f'focus_map has {nan_cells} NaN cells of '
                      f'{fmap.size} (a diverged focus head?); they count as '
                      'background, so no FocusChip comes from them')
        fmap = np.nan_to_num(fmap, nan=0.0)
    if fmap.shape != (cells_h, cells_w):
        fmap = np.pad(fmap, ((0, cells_h - fmap.shape[0]),
                             (0, cells_w - fmap.shape[1])))
    mask = _dilate(fmap >= threshold, dilation)
    holes = bool(holes)
    boxes = _region_boxes(mask, holes).astype(np.int64)
    # the reference's loop (gmask): paint the grown boxes and find the
    # regions again until their number stops changing; it compares counts
    # from the second painting on. Without holes a first painting that
    # merges nothing is already a fixed point, so that one may stop it.
    rounds = 0
    while len(boxes):
        count = len(boxes)
        mask = _paint(mask, _grow_and_shift(boxes, min_size, cells_h,
                                            cells_w))
        boxes = _region_boxes(mask, holes).astype(np.int64)
        rounds += 1
        if len(boxes) == count and (rounds > 1 or not holes):
            break
    boxes = _grow_and_shift(boxes, min_size, cells_h, cells_w)
    chips = boxes.astype(np.float64) * stride
    for axis, limit in ((0, scaled_w), (1, scaled_h)):
        far = chips[:, axis + 2] > limit
        chips[far, axis + 2] = limit
        chips[far, axis] = np.maximum(
            np.minimum(chips[far, axis], limit - min_size * stride), 0)
    chips /= scale
    chips[:, [0, 2]] += float(parent_offset[0])
    chips[:, [1, 3]] += float(parent_offset[1])
    return chips[np.lexsort((chips[:, 0], chips[:, 1]))]
