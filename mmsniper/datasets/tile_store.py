# Copyright (c) mmsniper contributors. All rights reserved.
"""A tiled, pyramidal image store so that a chip reads only its pixels.

Built once by ``tools/dataset_converters/build_tile_store.py``; read by
``LoadSniperChipFromFile(tile_store=DIR)``.

Layout: ``DIR/store.json`` (format, version, tile size, compression,
``color_type``, the common image root) and one tiled TIFF per image,
``DIR/<path relative to the root>.tif``. Page ``k`` of a TIFF is pyramid
level ``k`` (scale ``2**-k``): level 0 is the image exactly as
``mmcv.imfrombytes(flag=color_type)`` decodes it (BGR, EXIF orientation
applied), level ``k + 1`` is level ``k`` padded by edge replication to even
sides and averaged over 2 x 2 blocks (``cv2.INTER_AREA``), so level ``k``
pixel ``i`` covers original px ``[i * 2**k, (i + 1) * 2**k)`` exactly; the
pyramid stops at the first level that fits in one tile. Tiles are
``tile`` x ``tile`` px, compressed losslessly (zstd by default), so a read
gives exactly the level's pixels. Each TIFF's description records the
source file's size, mtime and SHA-256 (for resuming and staleness checks).

Staleness: :meth:`TileStore.open` compares the source file's size and
``mtime_ns`` (one ``stat()`` per call) with those recorded in its store
file; when they differ, the SHA-256 of the source is compared (once per
file and process, so a dataset copied without its mtimes stays usable),
and a store file built from other bytes raises :class:`StaleTileError`,
as does a truncated or corrupt store file. ``img_path`` must lie under the
image root recorded in ``store.json`` (store file = its relative path +
``.tif``, never outside the store folder); images that moved elsewhere are
matched by their trailing path components only when their size and mtime
or SHA-256 equal the recorded ones. When the source image is gone, the
store file is used as it is (one warning per store and process).

Library: ``tifffile`` + ``imagecodecs``. Measured on this 2-core machine
(shared with other jobs, so ratios are what count) for one 4000 x 3000
photo-like JPEG (2.7 MB, quality 90), 256 px tiles, random 512 x 512 reads at
levels 0-2:

=========================  =========  =========  ===========================
library, compression        size (MB)  read (ms)  note
=========================  =========  =========  ===========================
tifffile, zstd              46.0       5.0-19     lossless, fastest write
tifffile, deflate+pred.     25.0       19         lossless
tifffile, webp lossless     18.2       88         write 65 s
pyvips, deflate+pred.       26.7       23         lossless, write 3x slower
pyvips, jpeg Q95            12.6       22         lossy (max error 6)
cv2 full decode (today)     2.7        200-450    whole image every chip
=========================  =========  =========  ===========================

pyvips-binary 8.18.7 has no zstd, libvips starts its own worker threads
(a hazard in forked data-loader workers), and pyvips 3.2.0 installs from a
source archive; tifffile and imagecodecs install from wheels, are
fork-safe (plain file reads, no threads here), and let us read exactly the
tiles that overlap a chip (so bytes read per chip are known). Hence
tifffile + zstd, with ``deflate`` (about half the size, about 2-4x slower
reads) as the option when disk matters more. The price of lossless tiles
is size: roughly the raw pixel count x 4/3 (pyramid), i.e. 10-20x a
JPEG source on noisy photos; ``build_tile_store.py`` reports the ratio
and checks free disk space first.
"""
import hashlib
import json
import math
import os
import os.path as osp
import warnings
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

STORE_FORMAT = 'mmsniper-tile-store'
STORE_VERSION = 1
STORE_META = 'store.json'
COMPRESSIONS = ('zstd', 'deflate')
_DESCRIPTION_KEY = 'mmsniper_tile_store'


class TileStoreError(OSError):
    """A tile store, or one of its files, is missing or unusable."""


class StaleTileError(TileStoreError):
    """A store file that does not hold the current pixels of its image:
    built from an older version of it or from another file, truncated or
    corrupt. The image file itself may still be read instead."""


def num_levels(height: int, width: int, tile: int) -> int:
    """Levels 0..L-1: halve until the level fits in one tile."""
    if not isinstance(tile, (int, np.integer)) or tile < 16 or tile % 16:
        raise ValueError(f'tile must be a positive multiple of 16 (TIFF '
                         f'tiles), got {tile!r}')
    levels = 1
    while max(height, width) > tile:
        height, width = -(-height // 2), -(-width // 2)
        levels += 1
    return levels


def downsample2(img: np.ndarray) -> np.ndarray:
    """Next pyramid level: pad to even sides by edge replication, then the
    mean of each 2 x 2 block (``cv2.INTER_AREA``, rounded)."""
    h, w = img.shape[:2]
    if h % 2 or w % 2:
        img = cv2.copyMakeBorder(img, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
    out = cv2.resize(
        img, (img.shape[1] // 2, img.shape[0] // 2),
        interpolation=cv2.INTER_AREA)
    if img.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


def build_pyramid(img: np.ndarray, tile: int) -> List[np.ndarray]:
    """All levels of ``img`` (level 0 is ``img`` itself)."""
    levels = [img]
    for _ in range(num_levels(img.shape[0], img.shape[1], tile) - 1):
        levels.append(downsample2(levels[-1]))
    return levels


def level_for_scale(scale: float, levels: int) -> int:
    """The coarsest level ``k`` with ``2**-k >= scale`` (still at least the
    chip's resolution)."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f'scale must be finite and > 0, got {scale}')
    k = int(math.floor(math.log2(1.0 / scale) + 1e-9)) if scale < 1 else 0
    return max(0, min(k, levels - 1))


def write_tiled_pyramid(img: np.ndarray,
                        path: str,
                        tile: int = 256,
                        compression: str = 'zstd',
                        description: Optional[dict] = None) -> int:
    """Write ``img``'s pyramid as a tiled TIFF at ``path`` atomically (a
    temporary file renamed at the end). Returns the file size in bytes."""
    import tifffile
    if compression not in COMPRESSIONS:
        raise ValueError(f'compression must be one of {COMPRESSIONS}, got '
                         f'{compression!r}')
    if tile % 16 or tile <= 0:
        raise ValueError(f'tile must be a positive multiple of 16, got {tile}')
    desc = json.dumps({_DESCRIPTION_KEY: dict(description or {})})
    tmp = f'{path}.tmp{os.getpid()}'
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    kwargs = dict(compression=compression, tile=(tile, tile))
    if compression == 'deflate':
        kwargs['predictor'] = True
    try:
        with tifffile.TiffWriter(tmp, bigtiff=img.nbytes > 2**31) as tw:
            level = img
            for k in range(num_levels(img.shape[0], img.shape[1], tile)):
                if k:
                    level = downsample2(level)
                photometric = 'minisblack' if level.ndim == 2 or (
                    level.shape[2] != 3) else 'rgb'
                tw.write(
                    level,
                    photometric=photometric,
                    description=desc if k == 0 else None,
                    metadata=None,
                    **kwargs)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return osp.getsize(path)


class TiledImage:
    """One image of a store, open for region reads.

    Only the tiles that overlap a region are read (``os.pread``) and
    decoded; :attr:`bytes_read` counts the compressed bytes read so far.
    """

    def __init__(self, path: str) -> None:
        import tifffile
        self.path = path
        self._fd = None
        try:
            self._tif = tifffile.TiffFile(path)
            pages = list(self._tif.pages)
            desc = json.loads(pages[0].description or '{}')
            file_size = os.fstat(self._tif.filehandle.fileno()).st_size
        except Exception as e:
            raise StaleTileError(f'{path}: unreadable tile store file '
                                 f'({type(e).__name__}: {e}); rebuild it '
                                 'with build_tile_store.py') from e
        self.source = (desc.get(_DESCRIPTION_KEY, {})
                       if isinstance(desc, dict) else {})
        self.levels = []
        for page in pages:
            if not page.is_tiled:
                self._tif.close()
                raise StaleTileError(f'{path}: page is not tiled')
            self.levels.append(
                dict(
                    page=page,
                    shape=page.shape,
                    tile=(page.tilelength, page.tilewidth),
                    offsets=np.asarray(page.dataoffsets, np.int64),
                    counts=np.asarray(page.databytecounts, np.int64)))
        problem = self._incomplete(file_size)
        if problem:
            self._tif.close()
            raise StaleTileError(
                f'{path}: truncated or incomplete tile store file '
                f'({problem}); rebuild it with build_tile_store.py')
        self._fd = os.open(path, os.O_RDONLY)
        self.bytes_read = 0

    def _incomplete(self, file_size: int) -> Optional[str]:
        """Why the file cannot be a complete pyramid, or None: every
        level present (as ``write_tiled_pyramid`` writes them) and every
        tile's bytes inside the file."""
        if not self.levels:
            return 'no pages'
        shape = self.levels[0]['shape']
        tile = self.levels[0]['tile']
        expected = (
            num_levels(shape[0], shape[1], tile[0])
            if tile[0] == tile[1] and tile[0] % 16 == 0 else None)
        if expected is not None and len(self.levels) != expected:
            return f'{len(self.levels)} of {expected} pyramid levels'
        h, w = shape[:2]
        for k, info in enumerate(self.levels):
            if tuple(info['shape'][:2]) != (h, w):
                return f'level {k} is {info["shape"][:2]}, not {(h, w)}'
            th, tw = info['tile']
            ntiles = -(-h // th) * -(-w // tw)
            if len(info['offsets']) < ntiles or len(
                    info['counts']) < ntiles:
                return f'level {k} lists fewer than {ntiles} tiles'
            ends = info['offsets'] + info['counts']
            if (info['counts'] <= 0).any() or (info['offsets'] <= 0).any():
                return f'level {k} has missing tiles'
            if ends.max() > file_size:
                return (f'level {k} has tiles up to byte {int(ends.max())} '
                        f'of a {file_size}-byte file')
            h, w = -(-h // 2), -(-w // 2)
        return None

    @property
    def shape(self) -> Tuple[int, ...]:
        """Level-0 shape (h, w[, c])."""
        return self.levels[0]['shape']

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def read_region(self, level: int, x0: int, y0: int, x1: int,
                    y1: int) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` of ``level`` (clipped to the level)."""
        info = self.levels[level]
        lh, lw = info['shape'][:2]
        x0, y0 = max(int(x0), 0), max(int(y0), 0)
        x1, y1 = min(int(x1), lw), min(int(y1), lh)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f'{self.path}: empty region at level {level}')
        th, tw = info['tile']
        ntx = -(-lw // tw)
        out = np.empty(
            (y1 - y0, x1 - x0) + tuple(info['shape'][2:]),
            dtype=info['page'].dtype)
        page = info['page']
        for ty in range(y0 // th, (y1 - 1) // th + 1):
            for tx in range(x0 // tw, (x1 - 1) // tw + 1):
                index = ty * ntx + tx
                count = int(info['counts'][index])
                data = os.pread(self._fd, count, int(info['offsets'][index]))
                if len(data) != count:
                    raise StaleTileError(
                        f'{self.path}: truncated (tile {index} of level '
                        f'{level}); rebuild it with build_tile_store.py')
                self.bytes_read += count
                try:
                    tile = page.decode(data, index)[0]
                except Exception as e:
                    raise StaleTileError(
                        f'{self.path}: corrupt tile {index} of level '
                        f'{level} ({e}); rebuild it') from e
                tile = tile.reshape(tile.shape[-3:])  # (th, tw, c)
                ys, xs = ty * th, tx * tw
                a0, a1 = max(y0, ys), min(y1, ys + th)
                b0, b1 = max(x0, xs), min(x1, xs + tw)
                part = tile[a0 - ys:a1 - ys, b0 - xs:b1 - xs]
                out[a0 - y0:a1 - y0, b0 - x0:b1 - x0] = (
                    part if out.ndim == 3 else part[..., 0])
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._tif.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def relative_to(path: str, root: str) -> Optional[str]:
    """``path`` relative to the directory ``root`` (both as given, so pass
    real paths), or None when it is not under ``root``."""
    rel = osp.relpath(path, root)
    if rel == osp.curdir or rel == osp.pardir or rel.startswith(
            osp.pardir + os.sep) or osp.isabs(rel):
        return None
    return rel


def read_store_meta(root: str) -> dict:
    """``root/store.json``, checked; :class:`TileStoreError` names the file
    for anything unusable."""
    meta_path = osp.join(root, STORE_META)
    if not osp.isfile(meta_path):
        raise TileStoreError(
            f'{root!r} is not a tile store (no {STORE_META}); build one '
            'with tools/dataset_converters/build_tile_store.py')
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise TileStoreError(f'{meta_path}: unreadable ({type(e).__name__}: '
                             f'{e}); rebuild the store with '
                             'build_tile_store.py into a new --out') from e
    if not isinstance(meta, dict):
        raise TileStoreError(f'{meta_path}: not a JSON object')
    if (meta.get('format') != STORE_FORMAT
            or meta.get('version') != STORE_VERSION):
        raise TileStoreError(
            f'{meta_path}: not a {STORE_FORMAT} v{STORE_VERSION} store')
    bad = [
        k for k in ('image_root', 'color_type')
        if not isinstance(meta.get(k), str)
    ]
    if bad:
        raise TileStoreError(f'{meta_path}: missing or invalid ' +
                             ', '.join(bad))
    return meta


class TileStore:
    """A store directory: maps image paths to :class:`TiledImage` files.

    ``img_path`` is looked up by its path relative to the image root
    recorded at build time (``store.json``), and never outside the store
    folder. An image that is not under that root (the images moved) is
    matched by its trailing path components (``a/b/c.jpg``, ``b/c.jpg``,
    ``c.jpg``), and accepted only when its size and mtime, or its SHA-256,
    equal those recorded in the store file.

    :meth:`open` checks every call that the store file was built from the
    current source file (see the module docstring) and raises
    :class:`StaleTileError` when not. Open files are cached per process (at
    most ``max_open``), so forked data-loader workers never share a handle.
    """

    def __init__(self, root: str, max_open: int = 16) -> None:
        self.root = root
        self.meta = read_store_meta(root)
        self.image_root = osp.realpath(self.meta['image_root'])
        self.color_type = self.meta['color_type']
        self.max_open = max_open
        self._cache: 'OrderedDict[str, TiledImage]' = OrderedDict()
        self._paths: Dict[str, Tuple[str, bool]] = {}
        #: store file -> (source size, mtime_ns) seen to match it
        self._verified: Dict[str, Tuple[int, int]] = {}
        #: store file -> ((source size, mtime_ns), why it is stale)
        self._stale: Dict[str, Tuple[Tuple[int, int], str]] = {}
        self._warned_no_source = False
        self._pid = os.getpid()

    @staticmethod
    def relative_tif(rel_path: str) -> str:
        return rel_path + '.tif'

    def _inside(self, rel: str) -> Optional[str]:
        """``root/rel.tif`` if that stays inside the store folder (no
        absolute, empty or ``..`` parts; links the store's owner put in the
        store are followed)."""
        parts = rel.replace('\\', '/').split('/')
        if (not rel or osp.isabs(rel) or osp.pardir in parts
                or '' in parts):
            return None
        return osp.join(self.root, self.relative_tif(rel))

    def _find(self, img_path: str) -> Tuple[str, bool]:
        """(store file, whether ``img_path`` is under the image root)."""
        found = self._paths.get(img_path)
        if found is not None:
            return found
        rel = relative_to(osp.realpath(img_path), self.image_root)
        if rel is not None:
            path = self._inside(rel)
            if path is None or not osp.isfile(path):
                raise TileStoreError(
                    f'{img_path}: not in the tile store {self.root!r}; run '
                    'tools/dataset_converters/build_tile_store.py again on '
                    'this dataset (it resumes and adds missing images)')
            found = (path, True)
        else:
            parts = [
                p for p in osp.normpath(img_path).replace('\\', '/').split(
                    '/') if p not in ('', osp.curdir, osp.pardir)
            ]
            for i in range(len(parts)):
                path = self._inside('/'.join(parts[i:]))
                if path is not None and osp.isfile(path):
                    found = (path, False)
                    break
            else:
                raise TileStoreError(
                    f'{img_path}: not under the image root '
                    f'{self.image_root!r} of the tile store {self.root!r} '
                    '(built for another dataset, or the images moved) and no '
                    'store file matches its name; build a store for this '
                    'dataset with tools/dataset_converters/'
                    'build_tile_store.py')
        self._paths[img_path] = found
        return found

    def tif_path(self, img_path: str) -> str:
        """The store file for ``img_path``; raises if it is not there
        (without checking that it is up to date)."""
        return self._find(img_path)[0]

    def _check_source(self, img_path: str, tiled: 'TiledImage',
                      under_root: bool) -> None:
        """Raise :class:`StaleTileError` unless ``tiled`` was built from
        the current ``img_path`` (see the module docstring)."""
        tif = tiled.path
        try:
            st = os.stat(img_path)
        except OSError:
            st = None
        if st is None:
            if not under_root:
                raise TileStoreError(
                    f'{img_path}: not found, and not under the image root '
                    f'{self.image_root!r} of the tile store {self.root!r}, '
                    f'so its store file {tif} (matched by name) cannot be '
                    'checked against it')
            if not self._warned_no_source:
                self._warned_no_source = True
                warnings.warn(
                    f'{img_path}: source image not found; using its tile '
                    f'store file {tif} without a staleness check (this '
                    f'warning is shown once for the store {self.root!r})')
            return
        key = (int(st.st_size), int(st.st_mtime_ns))
        if self._verified.get(tif) == key:
            return
        stale = self._stale.get(tif)
        if stale is not None and stale[0] == key:
            raise StaleTileError(stale[1])
        src = tiled.source
        ok = (src.get('size'), src.get('mtime_ns')) == key
        if not ok and src.get('size') == key[0] and isinstance(
                src.get('sha256'), str):
            ok = file_sha256(img_path) == src['sha256']
        if ok:
            self._verified[tif] = key
            return
        if under_root:
            why = (f'{img_path}: the tile store file {tif} was built from '
                   f"another version of it (size {src.get('size')}, "
                   f"mtime_ns {src.get('mtime_ns')}; now {key[0]}, "
                   f'{key[1]})')
        else:
            why = (f'{img_path}: not under the image root '
                   f'{self.image_root!r} of the tile store {self.root!r}, '
                   f'and the store file {tif} matched by its name was built '
                   f"from another file ({src.get('source', '?')}: size "
                   f"{src.get('size')}, mtime_ns {src.get('mtime_ns')}; "
                   f'this one {key[0]}, {key[1]})')
        self._stale[tif] = (key, why)
        raise StaleTileError(why)

    def open(self, img_path: str) -> TiledImage:
        """The store file of ``img_path``, open, after checking that it is
        complete and was built from the current ``img_path``."""
        if os.getpid() != self._pid:  # forked: drop the parent's handles
            self._cache = OrderedDict()
            self._pid = os.getpid()
        path, under_root = self._find(img_path)
        img = self._cache.get(path)
        if img is not None:
            self._cache.move_to_end(path)
        else:
            img = TiledImage(path)
            self._cache[path] = img
            while len(self._cache) > self.max_open:
                _, old = self._cache.popitem(last=False)
                old.close()
        self._check_source(img_path, img, under_root)
        return img

    def __getstate__(self):
        state = self.__dict__.copy()
        state['_cache'] = OrderedDict()
        return state


def write_store_meta(root: str, image_root: str, tile: int, compression: str,
                     color_type: str) -> dict:
    """Create ``store.json``, or check that an existing one agrees."""
    meta = dict(
        format=STORE_FORMAT,
        version=STORE_VERSION,
        image_root=osp.realpath(image_root),
        tile=int(tile),
        compression=compression,
        color_type=color_type)
    path = osp.join(root, STORE_META)
    if osp.isfile(path):
        old = read_store_meta(root)
        keys = ('format', 'version', 'tile', 'compression', 'color_type')
        diff = [k for k in keys if old.get(k) != meta[k]]
        if diff:
            raise TileStoreError(f'{path} was built with other settings (' +
                                 ', '.join(f'{k}={old.get(k)!r} vs {meta[k]!r}'
                                           for k in diff) +
                                 '); use another --out or the '
                                 'same settings')
        return old
    os.makedirs(root, exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        json.dump(meta, f, indent=1)
    os.replace(path + '.tmp', path)
    return meta


def source_stamp(img_path: str) -> dict:
    st = os.stat(img_path)
    return dict(size=int(st.st_size), mtime_ns=int(st.st_mtime_ns))


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB pieces)."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


def is_up_to_date(tif_path: str, img_path: str) -> bool:
    """Whether ``tif_path`` exists, is complete (every level and tile in
    the file) and was built from the current ``img_path`` (same size and
    mtime)."""
    if not osp.isfile(tif_path):
        return False
    try:
        img = TiledImage(tif_path)
    except TileStoreError:
        return False
    try:
        src = img.source
        stamp = source_stamp(img_path)
        return (src.get('size') == stamp['size']
                and src.get('mtime_ns') == stamp['mtime_ns'])
    finally:
        img.close()


def region_for_chip(box: Sequence[float], level: int, shape: Tuple[int, int],
                    margin: int) -> Tuple[int, int, int, int]:
    """Level-px region (x0, y0, x1, y1) covering ``box`` (original px) plus
    ``margin`` level px, clipped to the level."""
    f = 2.0**-level
    lh, lw = shape
    x1, y1, x2, y2 = box
    rx0 = min(max(int(math.floor(x1 * f)) - margin, 0), lw - 1)
    ry0 = min(max(int(math.floor(y1 * f)) - margin, 0), lh - 1)
    rx1 = max(min(int(math.ceil(x2 * f)) + margin, lw), rx0 + 1)
    ry1 = max(min(int(math.ceil(y2 * f)) + margin, lh), ry0 + 1)
    return rx0, ry0, rx1, ry1
