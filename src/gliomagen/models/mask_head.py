"""How the generator's raw mask output becomes 4-class logits (``model.mask_head``).

``softmax`` (default): the raw output *is* the logits of the four labels (0 background, 1 necrosis
or non-enhancing core, 2 edema, 3 enhancing tumour), one free channel per class.

``nested``: the glioma's layers are drawn as nested level sets of one field, as they lie in a
typical glioma from the outside in: edema, then enhancing tumour, then the core (label 1). The raw
output's four channels are read as a *depth* field ``f`` and three thresholds ``t1 <= t2 <= t3``
(``t1 = g1``, ``t2 = t1 + softplus(g2)``, ``t3 = t2 + softplus(g3)``, each a field of its own, so
the layers' thickness varies in space). An ordinal (cumulative-logit) model gives the class
probabilities::

    P(depth >= k) = sigmoid(f - t_k)
    p(bg) = 1 - P(>= 1),  p(edema) = P(>= 1) - P(>= 2),
    p(enhancing) = P(>= 2) - P(>= 3),  p(core) = P(>= 3)

and the logits returned are their logarithms (computed stably), so ``softmax(logits)`` gives the
probabilities back and every consumer (argmax labels, cross-entropy, Dice, D's input) works as it
does for ``softmax``. Where ``f`` is a smooth bump, each layer is a closed shell around the next:
the enhancing rim surrounds the core by construction, and a zero-width enhancing layer
(``softplus(g3) -> 0``) gives a low-grade tumour whose core touches the edema. A layer may also
thin to nothing in one place only (a partial rim, a core that touches the edema on one side).
What it cannot draw is layers out of order: walking outward from a peak of ``f`` the labels
never go back inward (no edema inside the core, no enhancing tissue outside the edema, no core
ring around enhancing tissue). Real tumours break this at times, so ``nested`` is a prior that
suits the phantom cohort and typical glioblastoma; ``softmax`` assumes nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MASK_HEADS = ("softmax", "nested")
# nested layer order (outside in) -> label: background 0, edema 2, enhancing 3, core 1
NESTED_LABEL_OF_LAYER = (0, 2, 3, 1)
_LAYER_OF_LABEL = tuple(NESTED_LABEL_OF_LAYER.index(lab) for lab in range(4))
MIN_GAP = 1e-6


def _log_diff_sigmoid(a: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
    """``log(sigmoid(a) - sigmoid(a - gap))`` for ``gap > 0``, without cancellation.

    ``sigmoid(a) - sigmoid(b) = sigmoid(a) * sigmoid(-b) * (1 - exp(-(a - b)))``.
    """
    return F.logsigmoid(a) + F.logsigmoid(gap - a) + torch.log(-torch.expm1(-gap))


def nested_logits(raw: torch.Tensor) -> torch.Tensor:
    """Raw ``[N, 4, *S]`` (depth field, then three threshold fields) -> label log-probabilities.

    Returns:
        ``[N, 4, *S]`` float32 log-probabilities in label order (0, 1, 2, 3); they sum (after
        ``exp``) to 1 at every voxel.
    """
    if raw.shape[1] != 4:
        raise ValueError(f"the nested mask head needs 4 channels, got {raw.shape[1]}")
    raw = raw.float()
    f, g1, g2, g3 = raw.unbind(1)
    a1 = f - g1  # logit of P(depth >= 1)
    gap2 = F.softplus(g2).clamp_min(MIN_GAP)
    gap3 = F.softplus(g3).clamp_min(MIN_GAP)
    a2 = a1 - gap2  # logit of P(depth >= 2)
    a3 = a2 - gap3  # logit of P(depth >= 3)
    layers = (
        F.logsigmoid(-a1),  # background
        _log_diff_sigmoid(a1, gap2),  # edema
        _log_diff_sigmoid(a2, gap3),  # enhancing
        F.logsigmoid(a3),  # core
    )
    return torch.stack([layers[i] for i in _LAYER_OF_LABEL], dim=1)


def to_logits(raw: torch.Tensor, kind: str) -> torch.Tensor:
    """The generator's raw mask output -> 4-class logits under ``model.mask_head = kind``."""
    if kind == "softmax":
        return raw
    if kind == "nested":
        return nested_logits(raw).to(raw.dtype)
    raise ValueError(f"unknown mask head {kind!r}; expected one of {MASK_HEADS}")
