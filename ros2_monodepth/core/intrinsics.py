"""Pinhole intrinsics of a resized image, in numpy alone: the one formula shared by the model contract (torch-free),
the geometry module, the frame pipeline and training.

    >>> import numpy as np
    >>> float(scale_intrinsics(np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]]), 0.5, 0.5)[0, 2])
    39.5
"""

from __future__ import annotations

import numpy as np


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics of an image resized by (sx, sy), pixel-centre convention (cx' = (cx + 0.5) * sx - 0.5).

    Shapes: (3, 3) -> (3, 3).
    """
    out = np.array(K, dtype=np.float64, copy=True)
    out[0, 0] *= sx
    out[1, 1] *= sy
    out[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return out
