"""Only where torch is not installed (tests/test_peers.sh checks): the few
torch calls vLLM's HTTP tests make on the scores they read back (tensor,
allclose; nn.functional.sigmoid, cosine_similarity), on numpy."""
import numpy as _np

from . import nn  # noqa: F401


def tensor(x, dtype=None):
    return _np.asarray(x, dtype=_np.float64)


def allclose(a, b, rtol=1e-05, atol=1e-08):
    return bool(_np.allclose(_np.asarray(a), _np.asarray(b), rtol=rtol, atol=atol))
