# Copyright (c) mmsniper contributors. All rights reserved.
"""A test-time loader that leaves huge tiled images undecoded."""
from typing import Optional

import numpy as np

from mmdet.registry import TRANSFORMS
from ..image_io import annotated_size, check_image_size
from ..lazy_image import (LAZY_KEY, LazyTiledImage, is_tiled_tiff,
                          lazy_handle)
from ..tile_store import StaleTileError, TileStoreError
from .loading import LoadSniperChipFromFile

#: Meta keys of the SNIPER tta_pipeline's ``PackDetInputs`` plus the handle.
LAZY_META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape',
                  'scale_factor', LAZY_KEY)


@TRANSFORMS.register_module()
class LoadSniperLazyImage(LoadSniperChipFromFile):
    """Test-time loader for images too large to decode (opt-in).

    For a tiled ``.tif``/``.tiff`` file (BigTIFF or not, with or without
    pyramid levels), or an image with an entry in ``tile_store``, nothing is
    decoded: ``img`` is a 1 x 1 placeholder (black, the decoded channels),
    ``img_shape`` and ``ori_shape`` are the full ``(h, w)``, and
    ``results['sniper_lazy_image']`` holds the handle
    (:func:`mmsniper.datasets.lazy_image.lazy_handle`: the TIFF to read,
    size, channels). :class:`~mmsniper.models.SniperTTAModel` reads each
    view of each scale from that TIFF, from the coarsest pyramid level that
    still has the view's resolution. ``PackDetInputs`` must keep the handle:
    add ``'sniper_lazy_image'`` to its ``meta_keys``
    (:data:`LAZY_META_KEYS`). Any other image (a JPEG without a store
    entry, a TIFF in strips) is loaded whole, as
    :class:`LoadSniperChipFromFile` loads it.

    A lazy image skips ``max_image_pixels`` (it is never decoded) but its
    size is still compared with the annotated ``height``/``width``
    (``check_size``). A stale store entry is not used (the image file is
    then read as ``stale_store`` says).

    Args:
        lazy_min_pixels (float): Images with fewer px (w x h) are loaded
            whole even when tiled. Defaults to 0 (every tiled image lazily).
        **kwargs: As :class:`LoadSniperChipFromFile`.
    """

    def __init__(self, *args, lazy_min_pixels: float = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not float(lazy_min_pixels) >= 0:
            raise ValueError('LoadSniperLazyImage: lazy_min_pixels must be '
                             f'>= 0, got {lazy_min_pixels!r}')
        self.lazy_min_pixels = float(lazy_min_pixels)

    def _lazy_tiff(self, filename: str) -> Optional[LazyTiledImage]:
        if self._store is not None:
            try:
                tif = self._store.open(filename).path
            except StaleTileError:
                if self.stale_store == 'error':
                    raise
                tif = None
            except TileStoreError:
                tif = None  # not in the store: read the file itself
            if tif is not None:
                return LazyTiledImage(tif)
        if is_tiled_tiff(filename):
            return LazyTiledImage(filename)
        return None

    def transform(self, results: dict) -> Optional[dict]:
        """Leave a tiled image undecoded, else load it whole.

        Args:
            results (dict): Result dict from the dataset.

        Returns:
            dict: With ``img`` (a placeholder for a lazy image),
            ``img_shape``, ``ori_shape`` and, for a lazy image,
            ``sniper_lazy_image``.
        """
        results.pop(LAZY_KEY, None)
        filename = results['img_path']
        if results.get('sniper_chip') is None:
            tiled = self._lazy_tiff(filename)
            if tiled is not None:
                try:
                    hw = tuple(int(v) for v in tiled.shape[:2])
                    handle = lazy_handle(tiled, filename, self.color_type)
                finally:
                    tiled.close()
                if hw[0] * hw[1] >= self.lazy_min_pixels:
                    expected = annotated_size(results)
                    if self.check_size and expected is not None:
                        check_image_size(filename, hw, expected,
                                         self.color_type)
                    shape = (1, 1, handle['out_channels'])
                    img = np.zeros(shape, dtype=np.uint8)
                    results['img'] = img.astype(
                        np.float32) if self.to_float32 else img
                    results['img_shape'] = hw
                    results['ori_shape'] = hw
                    results[LAZY_KEY] = handle
                    return results
        return super().transform(results)

    def __repr__(self) -> str:
        return (super().__repr__()[:-1] +
                f', lazy_min_pixels={self.lazy_min_pixels:g})')
