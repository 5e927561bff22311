# Copyright (c) mmsniper contributors. All rights reserved.
"""Constants and geometry checks shared by the chip tests."""
import numpy as np

COCO_SCALES = (3.0, 1.667, (-1, 512))
COCO_TRAIN_RANGES = ((-1, 80), (32, 150), (120, -1))
TOLERANCE = 1e-6


def contains(chip, box, tolerance=TOLERANCE):
    """Whether ``chip`` contains ``box`` (xyxy), with a float slack."""
    return (chip[0] <= box[0] + tolerance and chip[1] <= box[1] + tolerance
            and box[2] <= chip[2] + tolerance
            and box[3] <= chip[3] + tolerance)


def clip_to_image(boxes, image_size):
    height, width = image_size
    return np.clip(boxes, 0, [width, height, width, height])


def assert_chips_inside_image(chips, image_size, factor, chip_size):
    """Chips lie inside the image and have the chip size in scaled px,
    except along an axis where the scaled image fits in one chip (then the
    chip spans that axis)."""
    height, width = image_size
    assert (chips[:, :2] >= -TOLERANCE).all()
    assert (chips[:, 2] <= width + TOLERANCE).all()
    assert (chips[:, 3] <= height + TOLERANCE).all()
    for extent, sides in ((width * factor,
                           (chips[:, 2] - chips[:, 0]) * factor),
                          (height * factor,
                           (chips[:, 3] - chips[:, 1]) * factor)):
        expected = chip_size if extent > chip_size + 1e-6 else extent
        np.testing.assert_allclose(sides, expected, rtol=1e-9)
