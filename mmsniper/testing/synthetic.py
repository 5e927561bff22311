# Copyright (c) mmsniper contributors. All rights reserved.
"""Deterministic synthetic aerial-style detection dataset in COCO format.

The images mimic the setting SNIPER targets: large frames (1500-2500 px per
side by default), cluttered textured ground and many objects, most of them
tiny (10-30 px) with a few very large ones (300+ px). Three classes with
distinct shape and appearance are drawn from above:

* ``vehicle``: elongated rotated rectangle, saturated paint, dark windows,
  cast shadow (some are trucks with a pale cargo box).
* ``roof``: rotated gable or hip roof with two to four shaded facets.
* ``tank``: round storage tank, pale with dark rim, inner ring and centre.

Unlabelled distractors (crates, concrete slabs, rings, pools) resemble the
objects and are meant to feed negative chip mining.

Only numpy and OpenCV are used, so the module can be imported without mmdet.
Every image draws from its own generator seeded by ``(seed, split, index)``,
so an image does not depend on how many images are generated.

Longer than 800 lines because the renderer draws every object class, the
distractors and the ground texture itself (one concept: the demo's images);
split, its drawing helpers would only be imported from here.
"""
import json
import os
import os.path as osp
import re
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

__all__ = [
    'SYNTHETIC_CLASSES', 'GENERATOR_VERSION', 'MARKER_NAME',
    'render_synthetic_image', 'generate_synthetic_dataset',
    'ensure_synthetic_dataset', 'dataset_stats'
]

SYNTHETIC_CLASSES = ('vehicle', 'roof', 'tank')
# Bump whenever the rendered pixels or annotations change for the same args.
GENERATOR_VERSION = '1.0'
MARKER_NAME = '.synthetic_dataset.json'
SPLITS = ('train', 'val')

SMALL_SIZE = 32  # COCO small / medium border (sqrt of the box area)
MEDIUM_SIZE = 96  # COCO medium / large border
_REF_AREA = 2000 * 2000  # object counts are given for an image of this area
_SHIFT = 3  # cv2 fixed-point bits, so small shapes keep sub-pixel geometry
_FIX = 1 << _SHIFT

# Palettes are RGB.
_GROUND = [((104, 124, 66), (146, 128, 96)), ((120, 130, 80), (164, 150, 116)),
           ((88, 108, 60), (122, 112, 92)), ((138, 136, 110), (170, 160, 132))]
_FIELD = [(118, 140, 70), (170, 162, 98), (140, 114, 82), (96, 120, 62),
          (186, 174, 122), (128, 128, 76)]
_TREE = (50, 72, 42)
_VEHICLE = [(186, 34, 32), (34, 64, 166), (232, 232, 232), (30, 30, 36),
            (172, 174, 180), (224, 192, 40), (222, 112, 32)]
_ROOF = [(174, 86, 58), (130, 52, 44), (88, 92, 104), (120, 90, 66),
         (72, 82, 104)]
_TANK = [(234, 234, 228), (224, 216, 190), (202, 206, 208), (184, 198, 172)]
_CRATE = [(132, 112, 90), (112, 102, 82), (142, 142, 132), (92, 92, 84)]
_SLAB = [(172, 170, 162), (192, 190, 182), (152, 152, 148)]
_POOL = [(64, 152, 192), (82, 170, 200)]
_BLOB = [(120, 104, 82), (78, 96, 80), (150, 140, 118), (70, 84, 96)]


def _jitter(rng, colour, scale=0.12, noise=8.0):
    """Random brightness scaling plus per-channel noise of an RGB colour."""
    c = np.asarray(colour, np.float64) * rng.uniform(1 - scale, 1 + scale)
    c = c + rng.normal(0.0, noise, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _shade(colour, factor):
    """Scale an RGB colour, clipped to the valid range."""
    return tuple(int(min(255, max(0, round(v * factor)))) for v in colour)


def _pick(rng, palette):
    """Pick one entry of a palette."""
    return palette[int(rng.integers(len(palette)))]


def _fix(points):
    """Convert float pixel coordinates to cv2 fixed-point int32 arrays."""
    return np.round(np.asarray(points) * _FIX).astype(np.int32)


def _fill(img, polys, colour, aa=True):
    """Fill float polygons on ``img`` with sub-pixel precision."""
    line = cv2.LINE_AA if aa and img.dtype == np.uint8 else cv2.LINE_8
    cv2.fillPoly(img, [_fix(p) for p in polys], colour, line, _SHIFT)


def _circle(n=48, r=0.5):
    """Regular ``n``-gon approximating a circle of radius ``r``."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _rect(u0, u1, v0, v1):
    """Axis-aligned rectangle in local (u, v) coordinates."""
    return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], np.float64)


def _value_noise(rng, h, w, cells):
    """Smooth noise in [0, 1] from a bicubically upsampled random grid."""
    gh = max(2, int(round(cells * h / max(h, w)))) + 1
    gw = max(2, int(round(cells * w / max(h, w)))) + 1
    grid = rng.random((gh, gw), dtype=np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _fractal_noise(rng, h, w, cells, octaves):
    """Multi-octave value noise normalised to [0, 1]."""
    acc = np.zeros((h, w), np.float32)
    for k in range(octaves):
        acc += _value_noise(rng, h, w, cells * 2**k) * 0.55**k
    acc -= acc.min()
    return acc / max(float(acc.max()), 1e-6)


# ---------------------------------------------------------------- background
def _ground(rng, h, w):
    """Low-frequency two-colour ground texture at full resolution."""
    lh, lw = (h + 3) // 4, (w + 3) // 4
    a, b = (np.array(_jitter(rng, c), np.float32) for c in _pick(rng, _GROUND))
    mix = _fractal_noise(rng, lh, lw, 4, 5)[..., None]
    light = 0.82 + 0.36 * _fractal_noise(rng, lh, lw, 12, 3)[..., None]
    low = np.clip((a * (1 - mix) + b * mix) * light, 0, 255).astype(np.uint8)
    return cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)


def _draw_field(rng, img, centre, size):
    """A rotated crop field with row stripes, blended over the ground."""
    h, w = img.shape[:2]
    d, p = _frame(rng.uniform(0, np.pi))
    quad = _rect(-size[0] / 2, size[0] / 2, -size[1] / 2, size[1] / 2)
    quad = quad + rng.uniform(-0.12, 0.12, quad.shape) * min(size)
    poly = centre + quad[:, :1] * d + quad[:, 1:] * p
    x0, y0 = np.maximum(np.floor(poly.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(poly.max(0)).astype(int) + 1, (w, h))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return
    roi = img[y0:y1, x0:x1]
    colour = _jitter(rng, _pick(rng, _FIELD))
    tex = np.empty_like(roi)
    tex[:] = colour
    period = rng.uniform(5, 14)
    dark = _shade(colour, rng.uniform(0.78, 0.9))
    thick = max(1, int(period / 3))
    span = np.hypot(x1 - x0, y1 - y0)
    local = poly - (x0, y0)
    origin = local.mean(0)
    for k in np.arange(-span / 2, span / 2, period):
        a = origin + k * p - span * d
        b = origin + k * p + span * d
        cv2.line(tex, _fix(a), _fix(b), dark, thick, cv2.LINE_AA, _SHIFT)
    mask = np.zeros(roi.shape[:2], np.uint8)
    _fill(mask, [local], 255, aa=False)
    blended = cv2.addWeighted(roi, 0.35, tex, 0.65, 0)
    np.copyto(roi, blended, where=mask[..., None].astype(bool))


def _random_path(rng, h, w):
    """A wobbly polyline crossing the image from one border to another."""
    side = rng.integers(2)
    n = int(rng.integers(3, 7))
    t = np.linspace(-0.05, 1.05, n)
    wobble = np.cumsum(rng.normal(0, 0.08, n))
    start = rng.uniform(0.1, 0.9)
    if side == 0:  # left to right
        pts = np.stack([t * w, (start + wobble) * h], 1)
    else:  # top to bottom
        pts = np.stack([(start + wobble) * w, t * h], 1)
    return pts


def _draw_roads(rng, img, count):
    """Asphalt and dirt roads; returns ``(points, thickness)`` per road."""
    h, w = img.shape[:2]
    roads = []
    for _ in range(count):
        pts = _random_path(rng, h, w)
        paved = rng.random() < 0.7
        thick = int(rng.integers(14, 34) if paved else rng.integers(6, 14))
        colour = _jitter(rng, (88, 88, 92) if paved else (156, 136, 104))
        cv2.polylines(img, [_fix(pts)], False, _shade(colour, 0.75), thick + 4,
                      cv2.LINE_AA, _SHIFT)
        cv2.polylines(img, [_fix(pts)], False, colour, thick, cv2.LINE_AA,
                      _SHIFT)
        if paved and thick > 20:
            _draw_dashes(img, pts, _jitter(rng, (226, 226, 210)))
        roads.append((pts, thick))
    return roads


def _draw_dashes(img, pts, colour):
    """Dashed centre line along a polyline."""
    for a, b in zip(pts[:-1], pts[1:]):
        seg = np.hypot(*(b - a))
        for t in np.arange(0, seg - 12, 30) / max(seg, 1e-6):
            s = a + (b - a) * t
            e = a + (b - a) * min(1.0, t + 12 / seg)
            cv2.line(img, _fix(s), _fix(e), colour, 2, cv2.LINE_AA, _SHIFT)


def _draw_trees(rng, img, clusters, per_cluster):
    """Clumps of round canopies, each with a soft shadow."""
    h, w = img.shape[:2]
    for _ in range(clusters):
        c = rng.uniform((0, 0), (w, h))
        n = int(rng.integers(per_cluster // 2, per_cluster + 1))
        pos = c + rng.normal(0, rng.uniform(20, 160), (n, 2))
        radii = rng.uniform(3, 16, n)
        base = np.array(_jitter(rng, _TREE, 0.15, 6))
        gain = rng.uniform(0.88, 1.12, (n, 1))
        cols = np.clip(base * gain + rng.normal(0, 5, (n, 3)), 0, 255)
        # Convert in bulk: per-circle numpy calls would dominate the time.
        circles = zip(
            _fix(pos).tolist(),
            _fix(pos + radii[:, None] * 0.4).tolist(),
            _fix(radii).tolist(),
            cols.astype(int).tolist(), (cols * 0.55).astype(int).tolist())
        for ctr, shadow_ctr, r, col, shadow in circles:
            cv2.circle(img, shadow_ctr, r, shadow, -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(img, ctr, r, col, -1, cv2.LINE_AA, _SHIFT)


def _draw_blobs(rng, img, count):
    """Irregular dirt patches, ponds and stains."""
    h, w = img.shape[:2]
    for _ in range(count):
        c = rng.uniform((0, 0), (w, h))
        axes = rng.uniform(8, 90, 2)
        colour = _jitter(rng, _pick(rng, _BLOB))
        cv2.ellipse(img, _fix(c), tuple(_fix(axes)), rng.uniform(0, 180), 0,
                    360, colour, -1, cv2.LINE_AA, _SHIFT)


_DISTRACTORS = ('crate', 'slab', 'ring', 'pool')


def _draw_distractors(rng, img, count):
    """Unlabelled look-alikes: crates, slabs, rings and pools."""
    h, w = img.shape[:2]
    for _ in range(count):
        kind = rng.choice(_DISTRACTORS, p=[.4, .25, .2, .15])
        c = rng.uniform((0, 0), (w, h))
        d, p = _frame(rng.uniform(0, np.pi))
        if kind == 'ring':
            r = float(np.exp(rng.uniform(np.log(5), np.log(120))))
            col = _jitter(rng, _pick(rng, [(58, 58, 60), (200, 200, 196)]))
            thick = max(1, int(r * rng.uniform(0.06, 0.15)))
            cv2.circle(img, _fix(c), int(r * _FIX), col, thick, cv2.LINE_AA,
                       _SHIFT)
            continue
        if kind == 'crate':
            size, aspect, pal = np.exp(rng.uniform(np.log(8), np.log(40))), \
                rng.uniform(1.0, 1.5), _CRATE
        elif kind == 'slab':
            size, aspect, pal = np.exp(rng.uniform(np.log(30), np.log(300))), \
                rng.uniform(1.0, 3.0), _SLAB
        else:
            size, aspect, pal = rng.uniform(12, 50), rng.uniform(1.2, 2.0), \
                _POOL
        ln, wd = size * np.sqrt(aspect), size / np.sqrt(aspect)
        quad = _rect(-ln / 2, ln / 2, -wd / 2, wd / 2)
        _fill(img, [c + quad[:, :1] * d + quad[:, 1:] * p],
              _jitter(rng, _pick(rng, pal)))


# ------------------------------------------------------------------ objects
def _frame(angle):
    """Unit vectors along (u) and across (v) an object rotated by angle."""
    d = np.array([np.cos(angle), np.sin(angle)])
    return d, np.array([-d[1], d[0]])


def _vehicle_parts(rng):
    """Unit-length car or truck: ``(outline, [(polygon, colour), ...])``."""
    paint = _jitter(rng, _pick(rng, _VEHICLE))
    glass = _jitter(rng, (34, 40, 52), 0.2, 6)
    if rng.random() < 0.2:  # truck: cab + pale cargo box
        hw = rng.uniform(0.16, 0.2)
        cargo = _jitter(rng, (214, 214, 206))
        outline = _rect(-0.5, 0.5, -hw, hw)
        parts = [(_rect(0.27, 0.5, -hw, hw), paint),
                 (_rect(0.38, 0.46, -0.85 * hw, 0.85 * hw), glass),
                 (_rect(-0.5, 0.24, -hw, hw), cargo)]
        return outline, parts
    hw = rng.uniform(0.21, 0.27)
    cut = 0.3 * hw  # chamfered corners
    outline = np.array([[-0.5 + cut, -hw], [0.5 - cut, -hw], [0.5, -hw + cut],
                        [0.5, hw - cut], [0.5 - cut, hw], [-0.5 + cut, hw],
                        [-0.5, hw - cut], [-0.5, -hw + cut]])
    top = _shade(paint, rng.choice([0.82, 1.12]))
    windshield = _rect(0.1, 0.26, -0.84 * hw, 0.84 * hw)
    cabin = _rect(-0.24, 0.1, -0.76 * hw, 0.76 * hw)
    rear_window = _rect(-0.36, -0.24, -0.8 * hw, 0.8 * hw)
    parts = [(outline, paint), (windshield, glass), (cabin, top),
             (rear_window, glass)]
    return outline, parts


def _roof_parts(rng):
    """Unit-length gable or hip roof with shaded facets."""
    base = _jitter(rng, _pick(rng, _ROOF))
    hw = rng.uniform(0.18, 0.5)
    shades = [_shade(base, f) for f in (1.18, 0.74, 1.0, 0.88)]
    outline = _rect(-0.5, 0.5, -hw, hw)
    if rng.random() < 0.5:  # gable: two facets split by a light ridge
        ridge = max(0.006, 0.02 * hw)
        parts = [(_rect(-0.5, 0.5, -hw, 0), shades[0]),
                 (_rect(-0.5, 0.5, 0, hw), shades[1]),
                 (_rect(-0.5, 0.5, -ridge, ridge), _shade(base, 1.35))]
    else:  # hip: two trapezoids and two triangles
        r = max(0.0, 0.5 - hw)  # half ridge length
        facets = [[[-.5, -hw], [.5, -hw], [r, 0], [-r, 0]],
                  [[-.5, hw], [.5, hw], [r, 0], [-r, 0]],
                  [[-.5, -hw], [-r, 0], [-.5, hw]],
                  [[.5, -hw], [r, 0], [.5, hw]]]
        parts = [(np.array(f, np.float64), c) for f, c in zip(facets, shades)]
    return outline, parts


def _tank_parts(rng):
    """Unit-diameter storage tank: dark rim, lit top, inner ring, centre."""
    body = _jitter(rng, _pick(rng, _TANK), 0.06, 5)
    dark = _shade(body, rng.uniform(0.45, 0.6))
    ring_r = rng.uniform(0.28, 0.36)
    outline = _circle(64, 0.5)
    parts = [(outline, dark), (_circle(64, 0.46), _shade(body, 0.86)),
             (_circle(64, 0.42) + (-0.03, -0.03), body),
             (_circle(48, ring_r), dark), (_circle(48, ring_r - 0.03), body),
             (_circle(16, 0.05), dark)]
    return outline, parts


_PAINTERS = {
    'vehicle': _vehicle_parts,
    'roof': _roof_parts,
    'tank': _tank_parts
}
_LARGE_OK = ('roof', 'tank')  # plausible at 300+ px


def _log_uniform(rng, lo, hi):
    """Sample log-uniformly in [lo, hi]."""
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _object_sizes(rng, count, max_large):
    """Target box sizes (sqrt area): mostly tiny, some medium, a few large."""
    n_large = min(int(rng.integers(1, 4)), count) if max_large >= 150 else 0
    lo_large = min(300.0, 0.7 * max_large)
    sizes = [rng.uniform(lo_large, max_large) for _ in range(n_large)]
    for _ in range(count - n_large):
        if rng.random() < 0.7:
            sizes.append(_log_uniform(rng, 10, 31))
        else:
            sizes.append(_log_uniform(rng, 32, min(220.0, max_large)))
    return sorted(sizes, reverse=True)  # big first: small ones fill the gaps


def _scale_to_box(outline, d, p, size):
    """Scale the rotated outline so its box has sqrt area ``size``.

    Returns:
        tuple: Scale factor and the scaled box extent ``(w, h)``.
    """
    pts = outline[:, :1] * d + outline[:, 1:] * p
    ext = pts.max(0) - pts.min(0)
    scale = size / np.sqrt(ext.prod())
    return scale, ext * scale


class _Placer:
    """Rejection sampler that keeps objects inside and barely overlapping."""

    def __init__(self, h, w, max_overlap=0.2):
        self.h, self.w = h, w
        self.max_overlap = max_overlap
        self.boxes = np.zeros((0, 4))

    def try_add(self, centre, ext):
        """Reserve a box of extent ``ext`` at ``centre`` if it fits."""
        half = ext / 2 + 2
        box = np.concatenate([centre - half, centre + half])
        if box[0] < 0 or box[1] < 0 or box[2] > self.w or box[3] > self.h:
            return False
        b = self.boxes
        iw = np.clip(
            np.minimum(b[:, 2], box[2]) - np.maximum(b[:, 0], box[0]), 0, None)
        ih = np.clip(
            np.minimum(b[:, 3], box[3]) - np.maximum(b[:, 1], box[1]), 0, None)
        areas = np.minimum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]),
                           ext.prod())
        if len(b) and (iw * ih / areas).max() > self.max_overlap:
            return False
        self.boxes = np.vstack([self.boxes, box])
        return True


def _candidate_pose(rng, cls, size, clusters, roads, h, w):
    """Propose a centre and angle: near roads, in clusters or anywhere."""
    angle = rng.uniform(0, 2 * np.pi)
    r = rng.random()
    if cls == 'vehicle' and roads and r < 0.4:
        pts, thick = roads[int(rng.integers(len(roads)))]
        i = int(rng.integers(len(pts) - 1))
        seg = pts[i + 1] - pts[i]
        d = seg / max(np.hypot(*seg), 1e-6)
        side = rng.choice([-1.0, 1.0])
        off = side * (thick / 2 + size * rng.uniform(-0.6, 0.6))
        centre = pts[i] + seg * rng.random() + off * np.array([-d[1], d[0]])
        angle = np.arctan2(d[1], d[0]) + rng.choice([0, np.pi]) + \
            rng.normal(0, 0.05)
        return centre, angle
    if r < 0.75:
        c, sigma = clusters[int(rng.integers(len(clusters)))]
        return c + rng.normal(0, sigma, 2), angle
    return rng.uniform((0, 0), (w, h)), angle


def _cast_shadow(img, outline_world, offset, strength):
    """Darken the outline shifted by ``offset`` (drawn before the body)."""
    h, w = img.shape[:2]
    poly = outline_world + offset
    x0, y0 = np.maximum(np.floor(poly.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(poly.max(0)).astype(int) + 1, (w, h))
    if x1 <= x0 or y1 <= y0:
        return
    roi = img[y0:y1, x0:x1]
    mask = np.zeros(roi.shape[:2], np.uint8)
    _fill(mask, [poly - (x0, y0)], 255, aa=False)
    dark = cv2.convertScaleAbs(roi, alpha=strength)
    np.copyto(roi, dark, where=mask[..., None].astype(bool))


def _draw_objects(rng, img, ids, classes, count, roads):
    """Place and paint objects, writing their ids (1-based) into ``ids``.

    Returns:
        list[tuple]: ``(label, centre, box extent, drawn pixel count)``.
    """
    h, w = img.shape[:2]
    placer = _Placer(h, w)
    num_clusters = int(rng.integers(2, 6))
    centres = rng.uniform((0.1 * w, 0.1 * h), (0.9 * w, 0.9 * h),
                          (num_clusters, 2))
    clusters = list(zip(centres, rng.uniform(120, 420, num_clusters)))
    sun = rng.uniform(0, 2 * np.pi)
    sun_dir = np.array([np.cos(sun), np.sin(sun)])
    objects = []
    for size in _object_sizes(rng, count, min(600.0, 0.35 * min(h, w))):
        names = [c for c in classes if c in _LARGE_OK] if size >= 250 else []
        cls = _pick(rng, names or list(classes))
        outline, parts = _PAINTERS[cls](rng)
        for _ in range(20):
            centre, angle = _candidate_pose(rng, cls, size, clusters, roads, h,
                                            w)
            d, p = _frame(angle)
            scale, ext = _scale_to_box(outline, d, p, size)
            if placer.try_add(centre, ext):
                break
        else:
            continue
        pose = (centre, scale, d, p)
        shadow = scale * rng.uniform(0.08, 0.16) * sun_dir
        _cast_shadow(img, _to_world(outline, *pose), shadow,
                     rng.uniform(0.45, 0.6))
        for poly, colour in parts:
            _fill(img, [_to_world(poly, *pose)], colour)
        idx = len(objects) + 1
        _fill(ids, [_to_world(outline, *pose)], idx, aa=False)
        drawn = int((ids[_window(centre, ext, ids.shape)] == idx).sum())
        objects.append((classes.index(cls), centre, ext, drawn))
    return objects


def _to_world(poly, centre, scale, d, p):
    """Map local unit (u, v) coordinates to image pixels."""
    return centre + scale * (poly[:, :1] * d + poly[:, 1:] * p)


def _window(centre, ext, shape, pad=2):
    """Slices of ``shape`` covering a box of extent ``ext`` plus ``pad``."""
    h, w = shape[:2]
    x0, y0 = np.maximum(np.floor(centre - ext / 2 - pad).astype(int), 0)
    x1, y1 = np.minimum(
        np.ceil(centre + ext / 2 + pad).astype(int) + 1, (w, h))
    return slice(y0, y1), slice(x0, x1)


def _occlude(rng, img, ids, objects, frac=0.12):
    """Let tree canopies cover the edge of some small and medium objects."""
    for centre, ext in (o[1:3] for o in objects):
        if rng.random() >= frac or ext.max() > 200:
            continue
        r = float(np.sqrt(ext.prod()) * rng.uniform(0.2, 0.35))
        ang = rng.uniform(0, 2 * np.pi)
        c = centre + np.array([np.cos(ang), np.sin(ang)]) * ext / 2
        col = _jitter(rng, _TREE, 0.15, 6)
        cv2.circle(img, _fix(c), int(r * _FIX), col, -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(ids, _fix(c), int(r * _FIX), 0, -1, cv2.LINE_8, _SHIFT)


def _visible_boxes(ids, objects, min_visible=0.3):
    """Tight ``[x, y, w, h]`` of each object's visible pixels."""
    anns = []
    for idx, (label, centre, ext, drawn) in enumerate(objects, 1):
        rs, cs = _window(centre, ext, ids.shape)
        mask = ids[rs, cs] == idx
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if len(rows) == 0:
            continue
        bw, bh = int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)
        # Nearly hidden objects are dropped rather than labelled as slivers.
        if bw < 2 or bh < 2 or mask.sum() < min_visible * drawn:
            continue
        x, y = int(cs.start + cols[0]), int(rs.start + rows[0])
        anns.append((label, [x, y, bw, bh]))
    return anns


def _finish(rng, img):
    """Global colour jitter, optical blur and sensor grain."""
    h, w = img.shape[:2]
    gain = rng.uniform(0.95, 1.05, 3) * rng.uniform(0.9, 1.1)
    bias = rng.uniform(-10, 10)
    # One per-channel lookup table applies the affine colour jitter fast.
    lut = np.clip(np.arange(256)[:, None] * gain + bias, 0, 255)
    img = cv2.LUT(img, lut.astype(np.uint8)[:, None, :])
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    grain = rng.integers(0, 13, (h, w), dtype=np.uint8)
    img = cv2.add(img, cv2.merge([grain, grain, grain]))
    return cv2.subtract(img, (6, 6, 6, 0))


def _density(h, w):
    """Object count multiplier relative to the reference image area."""
    return float(np.clip(h * w / _REF_AREA, 0.2, 1.5))


def render_synthetic_image(rng,
                           min_size=1500,
                           max_size=2500,
                           classes=SYNTHETIC_CLASSES,
                           objects_per_image=(30, 80)):
    """Render one synthetic aerial image with its annotations.

    Args:
        rng (np.random.Generator | int): Random generator or seed.
        min_size (int): Smallest image side.
        max_size (int): Largest image side.
        classes (Sequence[str]): Class names to draw, a subset of
            :data:`SYNTHETIC_CLASSES`; labels index this sequence.
        objects_per_image (tuple[int, int]): Object count range for a
            2000x2000 image, scaled by image area.

    Returns:
        tuple: RGB ``uint8`` image, ``(N, 4)`` float32 ``xyxy`` boxes and
        ``(N,)`` int64 labels.
    """
    rng = np.random.default_rng(rng)
    classes = _check_classes(classes)
    h, w = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
    dens = _density(h, w)

    def n(lo, hi):
        return max(1, int(round(rng.integers(lo, hi + 1) * dens)))

    img = _ground(rng, h, w)
    for _ in range(n(4, 10)):
        _draw_field(rng, img, rng.uniform((0, 0), (w, h)),
                    rng.uniform(150, 700, 2))
    _draw_blobs(rng, img, n(10, 30))
    roads = _draw_roads(rng, img, n(1, 4))
    _draw_trees(rng, img, n(15, 35), 30)
    _draw_distractors(rng, img, n(20, 45))
    ids = np.zeros((h, w), np.uint16)
    objects = _draw_objects(rng, img, ids, list(classes),
                            n(*objects_per_image), roads)
    _occlude(rng, img, ids, objects)
    anns = _visible_boxes(ids, objects)
    img = _finish(rng, img)
    boxes = np.array([[x, y, x + bw, y + bh] for _, (x, y, bw, bh) in anns],
                     np.float32).reshape(-1, 4)
    labels = np.array([label for label, _ in anns], np.int64)
    return img, boxes, labels


def _check_classes(classes):
    """Validate class names against the available painters."""
    classes = tuple(classes)
    unknown = [c for c in classes if c not in _PAINTERS]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f'classes must be distinct names from '
                         f'{SYNTHETIC_CLASSES}, got {classes}')
    return classes


# ------------------------------------------------------------------ dataset
def _image_rng(seed, split, index):
    """Independent generator per (seed, split, image index)."""
    # A SeedSequence over the tuple avoids the collisions of ``seed + index``
    # (seed 0 image 1 == seed 1 image 0) and between train and val.
    return np.random.default_rng([seed, SPLITS.index(split), index])


def _render_file(path, rng, min_size, max_size, classes, jpeg_quality):
    """Render one image, write it as JPEG and return its size and labels."""
    img, boxes, labels = render_synthetic_image(rng, min_size, max_size,
                                                classes)
    ok, buf = cv2.imencode('.jpg', cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise RuntimeError(f'JPEG encoding failed for {path}')
    buf.tofile(path)
    return img.shape[:2], boxes, labels


def _write_split(out_dir, split, num, seed, classes, min_size, max_size,
                 jpeg_quality, workers):
    """Render one split's images and write its COCO annotation file."""
    img_dir = osp.join(out_dir, split)
    os.makedirs(img_dir, exist_ok=True)
    _remove_stale_images(img_dir, num)
    names = [f'{i:04d}.jpg' for i in range(num)]

    def render(i):
        return _render_file(
            osp.join(img_dir, names[i]), _image_rng(seed, split, i), min_size,
            max_size, classes, jpeg_quality)

    # Threads suffice: cv2 and large numpy ops release the GIL, and every
    # image has its own generator, so the output does not depend on them.
    with ThreadPoolExecutor(max(1, workers)) as pool:
        rendered = list(pool.map(render, range(num)))
    images, annotations = [], []
    for i, ((h, w), boxes, labels) in enumerate(rendered):
        images.append(dict(id=i + 1, file_name=names[i], width=w, height=h))
        for (x0, y0, x1, y1), label in zip(boxes.tolist(), labels.tolist()):
            bw, bh = int(x1 - x0), int(y1 - y0)
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=i + 1,
                    category_id=label + 1,
                    bbox=[int(x0), int(y0), bw, bh],
                    area=float(bw * bh),
                    iscrowd=0))
    coco = dict(
        info=dict(
            description='mmsniper synthetic aerial demo',
            version=GENERATOR_VERSION,
            seed=seed,
            split=split),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=c, supercategory='object')
            for i, c in enumerate(classes)
        ])
    ann_file = osp.join(out_dir, 'annotations', f'{split}.json')
    _write_json(ann_file, coco)
    return ann_file


def _remove_stale_images(img_dir, num):
    """Delete generated images beyond ``num`` left by an earlier run."""
    for name in os.listdir(img_dir):
        m = re.fullmatch(r'(\d{4,})\.jpg', name)
        if m and int(m.group(1)) >= num:
            os.remove(osp.join(img_dir, name))


def _write_json(path, obj):
    """Write JSON deterministically and atomically."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, separators=(',', ':'))
    os.replace(tmp, path)


def _generation_args(num_train, num_val, seed, min_size, max_size, classes,
                     jpeg_quality):
    """Normalised, JSON-comparable generation arguments."""
    if not 0 < min_size <= max_size:
        raise ValueError(f'need 0 < min_size <= max_size, got {min_size}, '
                         f'{max_size}')
    if seed < 0 or num_train < 0 or num_val < 0:
        raise ValueError('seed and image counts must be non-negative')
    return dict(
        num_train=int(num_train),
        num_val=int(num_val),
        seed=int(seed),
        min_size=int(min_size),
        max_size=int(max_size),
        classes=list(_check_classes(classes)),
        jpeg_quality=int(jpeg_quality))


def _result(out_dir, args, generated, seconds=0.0):
    """Paths and statistics of a generated dataset."""
    ann_files = {
        s: osp.join(out_dir, 'annotations', f'{s}.json')
        for s in SPLITS
    }
    return dict(
        out_dir=out_dir,
        ann_files=ann_files,
        img_dirs={s: osp.join(out_dir, s)
                  for s in SPLITS},
        num_images=dict(train=args['num_train'], val=args['num_val']),
        classes=tuple(args['classes']),
        stats={
            s: dataset_stats(f)
            for s, f in ann_files.items()
        },
        generated=generated,
        seconds=round(seconds, 3))


def generate_synthetic_dataset(out_dir,
                               num_train=24,
                               num_val=8,
                               seed=0,
                               min_size=1500,
                               max_size=2500,
                               classes=SYNTHETIC_CLASSES,
                               jpeg_quality=90,
                               workers=None):
    """Generate the synthetic dataset (always rewrites it).

    Layout: ``{out_dir}/train/0000.jpg``, ``{out_dir}/val/0000.jpg`` and
    ``{out_dir}/annotations/{train,val}.json`` plus a marker file recording
    the arguments for :func:`ensure_synthetic_dataset`.

    Args:
        out_dir (str): Output directory.
        num_train (int): Number of training images.
        num_val (int): Number of validation images.
        seed (int): Non-negative base seed.
        min_size (int): Smallest image side in pixels.
        max_size (int): Largest image side in pixels.
        classes (Sequence[str]): Subset of :data:`SYNTHETIC_CLASSES`; its
            order defines the category ids (1-based).
        jpeg_quality (int): JPEG quality of the written images.
        workers (int, optional): Rendering threads; defaults to the CPU
            count (at most 4). Does not affect the output.

    Returns:
        dict: ``out_dir``, ``ann_files``/``img_dirs`` (per split),
        ``num_images``, ``classes``, ``stats`` (per split, see
        :func:`dataset_stats`), ``generated`` and ``seconds``.
    """
    args = _generation_args(num_train, num_val, seed, min_size, max_size,
                            classes, jpeg_quality)
    workers = workers or min(4, os.cpu_count() or 1)
    start = time.perf_counter()
    marker = osp.join(out_dir, MARKER_NAME)
    if osp.exists(marker):
        os.remove(marker)  # an interrupted run must not look complete
    for split in SPLITS:
        _write_split(out_dir, split, args[f'num_{split}'], args['seed'],
                     args['classes'], args['min_size'], args['max_size'],
                     args['jpeg_quality'], workers)
    _write_json(marker, dict(generator_version=GENERATOR_VERSION, args=args))
    return _result(out_dir, args, True, time.perf_counter() - start)


def _is_complete(out_dir, args):
    """Whether the marker matches ``args`` and every listed file exists."""
    try:
        with open(osp.join(out_dir, MARKER_NAME)) as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return False
    if marker != dict(generator_version=GENERATOR_VERSION, args=args):
        return False
    for split in SPLITS:
        names = [f'{i:04d}.jpg' for i in range(args[f'num_{split}'])]
        if not osp.isfile(osp.join(out_dir, 'annotations', f'{split}.json')):
            return False
        if not all(osp.isfile(osp.join(out_dir, split, n)) for n in names):
            return False
    return True


def ensure_synthetic_dataset(out_dir, workers=None, **kwargs):
    """Generate the dataset unless an identical one already exists.

    Args:
        out_dir (str): Output directory.
        workers (int, optional): Rendering threads, if generating.
        **kwargs: Other arguments of :func:`generate_synthetic_dataset`;
            they (not ``workers``) must match the marker to skip.

    Returns:
        dict: As :func:`generate_synthetic_dataset`; ``generated`` is False
        when the existing files were kept.
    """
    defaults = dict(
        num_train=24,
        num_val=8,
        seed=0,
        min_size=1500,
        max_size=2500,
        classes=SYNTHETIC_CLASSES,
        jpeg_quality=90)
    unknown = set(kwargs) - set(defaults)
    if unknown:
        raise TypeError(f'unexpected arguments: {sorted(unknown)}')
    params = dict(defaults, **kwargs)
    args = _generation_args(**params)
    if _is_complete(out_dir, args):
        return _result(out_dir, args, False)
    return generate_synthetic_dataset(out_dir, workers=workers, **params)


def dataset_stats(ann_file):
    """Box count and size distribution of a COCO annotation file.

    Sizes are ``sqrt(w * h)`` of the boxes, as in COCO's area ranges.

    Args:
        ann_file (str): Path to a COCO json file.

    Returns:
        dict: ``num_images``, ``num_boxes``, ``boxes_per_image``,
        ``frac_small`` (< 32 px), ``frac_medium`` (32-96), ``frac_large``
        (>= 96), ``num_over_300``, ``median_sqrt_area``,
        ``min_sqrt_area``, ``max_sqrt_area`` and ``per_class`` counts.
    """
    with open(ann_file) as f:
        coco = json.load(f)
    names = {c['id']: c['name'] for c in coco['categories']}
    sizes = np.array(
        [np.sqrt(a['bbox'][2] * a['bbox'][3]) for a in coco['annotations']],
        np.float64)
    per_class = {n: 0 for n in names.values()}
    for a in coco['annotations']:
        per_class[names[a['category_id']]] += 1
    n_img, n_box = len(coco['images']), len(sizes)
    frac = (lambda m: round(float(m.mean()), 4) if n_box else 0.0)
    return dict(
        num_images=n_img,
        num_boxes=n_box,
        boxes_per_image=round(n_box / n_img, 2) if n_img else 0.0,
        frac_small=frac(sizes < SMALL_SIZE),
        frac_medium=frac((sizes >= SMALL_SIZE) & (sizes < MEDIUM_SIZE)),
        frac_large=frac(sizes >= MEDIUM_SIZE),
        num_over_300=int((sizes >= 300).sum()),
        median_sqrt_area=round(float(np.median(sizes)), 2) if n_box else 0.0,
        min_sqrt_area=round(float(sizes.min()), 2) if n_box else 0.0,
        max_sqrt_area=round(float(sizes.max()), 2) if n_box else 0.0,
        per_class=per_class)
