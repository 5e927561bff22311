# Copyright (c) mmsniper contributors. All rights reserved.
"""Small COCO files for tests, written on the fly."""
import json
import os.path as osp

import numpy as np


def write_coco(path, images, classes=('a', 'b'), masks=False):
    """Write a COCO json.

    Args:
        path (str): Output file.
        images (list[dict]): Each ``dict(file_name, width, height,
            boxes=[[x1, y1, x2, y2], ...], labels=[...], crowd=[...])``.
        classes (tuple): Category names.
        masks (bool): Add each box as a polygon ``segmentation``.

    Returns:
        str: ``path``.
    """
    coco = dict(images=[], annotations=[], categories=[
        dict(id=i + 1, name=name) for i, name in enumerate(classes)
    ])
    ann_id = 1
    for img_id, img in enumerate(images, start=1):
        coco['images'].append(
            dict(id=img_id, file_name=img['file_name'], width=img['width'],
                 height=img['height']))
        boxes = img.get('boxes', [])
        labels = img.get('labels', [0] * len(boxes))
        crowd = img.get('crowd', [0] * len(boxes))
        for box, label, iscrowd in zip(boxes, labels, crowd):
            x1, y1, x2, y2 = box
            ann = dict(id=ann_id, image_id=img_id, category_id=label + 1,
                       bbox=[x1, y1, x2 - x1, y2 - y1],
                       area=(x2 - x1) * (y2 - y1), iscrowd=iscrowd)
            if masks:  # the box as a polygon
                ann['segmentation'] = [[x1, y1, x2, y1, x2, y2, x1, y2]]
            coco['annotations'].append(ann)
            ann_id += 1
    with open(path, 'w') as f:
        json.dump(coco, f)
    return path


def random_images(num, seed=0, min_size=300, max_size=1800, max_boxes=25):
    """Random image records with boxes of all sizes."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(num):
        width, height = rng.integers(min_size, max_size, size=2)
        n = int(rng.integers(0, max_boxes))
        side = np.exp(rng.uniform(np.log(4), np.log(min(width, height) / 2),
                                  size=(n, 2)))
        x1 = rng.uniform(0, width - side[:, 0])
        y1 = rng.uniform(0, height - side[:, 1])
        boxes = np.stack([x1, y1, x1 + side[:, 0], y1 + side[:, 1]], axis=1)
        images.append(
            dict(file_name=f'{i:04d}.jpg', width=int(width),
                 height=int(height), boxes=np.round(boxes, 1).tolist(),
                 labels=rng.integers(0, 2, size=n).tolist()))
    return images


def write_image_dataset(root, num_images=3, size=(360, 480), seed=0,
                        classes=('a', 'b'), masks=False):
    """JPEG images with filled rectangles as objects, and their COCO json.

    Args:
        root (str): Output folder; images go to ``root/images``.
        num_images (int): Number of images.
        size (tuple): (height, width) of each image.
        seed (int): Random seed.
        classes (tuple): Category names.
        masks (bool): Give each object its box as a polygon mask.

    Returns:
        str: Path of ``root/ann.json``.
    """
    import os

    import cv2
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    height, width = size
    records = []
    for i in range(num_images):
        img = rng.integers(60, 120, size=(height, width, 3), dtype=np.uint8)
        boxes, labels = [], []
        for side in (12, 20, 48, 120):
            x1 = int(rng.integers(0, width - side))
            y1 = int(rng.integers(0, height - side))
            label = int(rng.integers(0, len(classes)))
            color = (255, 40, 40) if label == 0 else (40, 255, 255)
            cv2.rectangle(img, (x1, y1), (x1 + side - 1, y1 + side - 1),
                          color, -1)
            boxes.append([x1, y1, x1 + side, y1 + side])
            labels.append(label)
        name = f'{i:04d}.jpg'
        cv2.imwrite(osp.join(root, 'images', name), img)
        records.append(dict(file_name=name, width=width, height=height,
                            boxes=boxes, labels=labels))
    return write_coco(osp.join(root, 'ann.json'), records, classes,
                      masks=masks)


def forge_jpeg_size(jpg: bytes, height: int, width: int) -> bytes:
    """The JPEG with its frame header (SOF0-2) declaring another size."""
    import struct
    out, pos = bytearray(jpg), 2
    while True:
        marker = out[pos + 1]
        (length, ) = struct.unpack('>H', out[pos + 2:pos + 4])
        if marker in (0xC0, 0xC1, 0xC2):
            out[pos + 5:pos + 9] = struct.pack('>HH', height, width)
            return bytes(out)
        pos += 2 + length


def forge_png_size(png: bytes, height: int, width: int) -> bytes:
    """The PNG with its IHDR declaring another size (CRC fixed)."""
    import struct
    import zlib
    out = bytearray(png)
    out[16:24] = struct.pack('>II', width, height)
    out[29:33] = struct.pack('>I', zlib.crc32(bytes(out[12:29])))
    return bytes(out)


#: What LoadSniperChipFromFile says about each of
#: :func:`write_lying_images`' files.
LYING_IMAGE_ERRORS = {
    'lie32k.jpg': 'forged or truncated header',
    'lie60k.jpg': 'above max_image_pixels=2.5e+09',
    'lie60k.png': 'above max_image_pixels=2.5e+09',
    'empty.jpg': 'empty file',
}


def write_lying_images(folder) -> dict:
    """Issue 19 item 3's files, in ``folder``: ~600-byte JPEGs whose header
    declares 32000 x 32000 and 60000 x 60000 px, a PNG declaring 60000 x
    60000 px and a 0-byte image.

    Returns:
        dict: File name -> path.
    """
    import cv2
    img = np.random.default_rng(0).integers(0, 255, (8, 8, 3), np.uint8)
    jpg = cv2.imencode('.jpg', img)[1].tobytes()
    png = cv2.imencode('.png', img)[1].tobytes()
    files = {
        'lie32k.jpg': forge_jpeg_size(jpg, 32000, 32000),
        'lie60k.jpg': forge_jpeg_size(jpg, 60000, 60000),
        'lie60k.png': forge_png_size(png, 60000, 60000),
        'empty.jpg': b'',
    }
    paths = {}
    for name, data in files.items():
        paths[name] = osp.join(str(folder), name)
        with open(paths[name], 'wb') as f:
            f.write(data)
    return paths


def run_fork_ranks(worker, args, world_size=2, timeout=300):
    """Run ``worker(rank, *args, out)`` in ``world_size`` forked processes
    (each sets up its own process group) and return what each put on
    ``out``, by rank: the first item it puts must be its rank. Fails when a
    process exits with an error."""
    import multiprocessing
    ctx = multiprocessing.get_context('fork')
    out = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(rank, *args, out))
        for rank in range(world_size)
    ]
    for proc in procs:
        proc.start()
    results = {}
    for _ in procs:
        item = out.get(timeout=timeout)
        results[item[0]] = item[1:]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0, f'a rank exited with {proc.exitcode}'
    return results
