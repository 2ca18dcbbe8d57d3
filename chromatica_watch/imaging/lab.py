"""sRGB (D65) -> CIE Lab in float32, with OpenCV's SIMD kernels: the first step of every histogram.

It follows `skimage.color.rgb2lab` (same matrix, white point and companding) but in float32, with a lookup
table for 8-bit input; tests hold the two together per pixel. The per-pixel arithmetic is OpenCV's (LUT,
3x3 transform, pow) because numpy's equivalents (fancy indexing, a (N, 3) @ (3, 3) matmul, np.cbrt) cost
several times more on the ~50k pixels of an image. Here, with the decoders, because imaging/ owns OpenCV:
the histogram itself (colour/histogram.py) is numpy alone, so a process that only reads an index never
loads OpenCV.
"""

from __future__ import annotations

import cv2
import numpy as np

# skimage.color.colorconv: xyz_from_rgb and the D65 / 2-degree white point.
_XYZ_FROM_RGB = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
    dtype=np.float64,
)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883], dtype=np.float64)
# The white point folded into the matrix: linear RGB -> (X/Xn, Y/Yn, Z/Zn), as cv2.transform wants it.
_XYZN_FROM_RGB = (_XYZ_FROM_RGB / _WHITE_D65[:, None]).astype(np.float32)
# f(X/Xn), f(Y/Yn), f(Z/Zn) -> L*, a*, b* as one affine map (last column: offset).
_LAB_FROM_F = np.array([[0.0, 116.0, 0.0, -16.0], [500.0, -500.0, 0.0, 0.0], [0.0, 200.0, -200.0, 0.0]],
                       dtype=np.float32)
_F_LINEAR_BELOW = np.float32(0.008856)


def _srgb_to_linear(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return np.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92).astype(np.float32)


_LINEAR_FROM_U8 = _srgb_to_linear(np.arange(256, dtype=np.float32) / 255.0)
_LINEAR_FROM_U8.setflags(write=False)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB pixels, shape (..., 3), uint8 or float in [0, 1] -> Lab float32, shape (N, 3)."""
    pixels = np.ascontiguousarray(rgb).reshape(-1, 1, 3)  # (N, 1, 3): one 3-channel column for OpenCV
    if len(pixels) == 0:
        return np.empty((0, 3), dtype=np.float32)
    if pixels.dtype == np.uint8:
        linear = cv2.LUT(pixels, _LINEAR_FROM_U8)
    else:
        linear = _srgb_to_linear(np.clip(pixels, 0.0, 1.0))
    xyz = cv2.transform(linear, _XYZN_FROM_RGB)
    # cv2.pow(x, 1/3) is exp(log x / 3) in SIMD float32, a tenth of np.cbrt's cost: within 2e-4 of
    # skimage's Lab over all 2^24 8-bit colours (checked once; the tests hold a grid of them and real
    # photos to 1e-3). Histograms move by < 3e-6 in L1, so ALGORITHM_VERSION stays. xyz >= 0: pow's
    # abs() is moot.
    f = cv2.pow(xyz, 1.0 / 3.0)
    np.copyto(f, xyz * np.float32(7.787) + np.float32(16.0 / 116.0), where=xyz <= _F_LINEAR_BELOW)
    return cv2.transform(f, _LAB_FROM_F).reshape(-1, 3)
