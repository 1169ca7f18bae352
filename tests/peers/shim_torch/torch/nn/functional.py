import numpy as _np


def sigmoid(x):
    return 1.0 / (1.0 + _np.exp(-_np.asarray(x, dtype=_np.float64)))


def cosine_similarity(a, b, dim=0):
    a, b = _np.asarray(a, dtype=_np.float64), _np.asarray(b, dtype=_np.float64)
    return float(_np.dot(a, b) / (_np.linalg.norm(a) * _np.linalg.norm(b)))
