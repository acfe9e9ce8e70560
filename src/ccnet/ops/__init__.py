"""Criss-cross attention: functional ops and modules, 2-D and 3-D.

The public API is ``__all__``; the submodules are the implementation. Reading order:

* :mod:`~ccnet.ops.reference`: the maths and its plain differentiable implementation (the portable path);
* :mod:`~ccnet.ops.dispatch`: ``criss_cross`` / ``cca_block``, autocast, and which path runs;
* the fast CPU path: :mod:`~ccnet.ops.lines` (line views), :mod:`~ccnet.ops.layout` (pixel-major
  tensors), :mod:`~ccnet.ops.projection` (1x1 projections), :mod:`~ccnet.ops.chunks` (one chunk's
  weights and aggregate), :mod:`~ccnet.ops.fast_forward`, :mod:`~ccnet.ops.fast_backward` and
  :mod:`~ccnet.ops.autograd`;
* :mod:`~ccnet.ops.functional`, :mod:`~ccnet.ops.cca`, :mod:`~ccnet.ops.cca3d`: the public ops and modules;
* :mod:`~ccnet.ops.recording`: ``record_attention()``, the softmax weights of the forward pass, per loop
  (what a pixel attends to; ``ccnet app``'s attention explorer and the paper's attention figure).
"""

from ccnet.ops.cca import CrissCrossAttention, RecurrentCrissCrossAttention
from ccnet.ops.cca3d import CrissCrossAttention3d, RecurrentCrissCrossAttention3d
from ccnet.ops.functional import criss_cross_attention, criss_cross_attention_3d

__all__ = [
    "CrissCrossAttention",
    "CrissCrossAttention3d",
    "RecurrentCrissCrossAttention",
    "RecurrentCrissCrossAttention3d",
    "criss_cross_attention",
    "criss_cross_attention_3d",
]
