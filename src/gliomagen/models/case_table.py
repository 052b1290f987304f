"""The training cases' conditions, and how close a requested condition is to each of them.

A model keeps the condition codes of its training cases (``case_cat [n, n_cat]``, ``case_cont
[n, n_cont]``, as :class:`gliomagen.data.conditions.ConditionSchema` encodes them) and, with a
fitted mixture prior, each case's responsibilities over the mixture's components (``case_resp
[n, K]``). Two things read them:

- the latent prior (:class:`gliomagen.models.latent_prior.LatentPrior`): under conditions ``c``
  the mixture's component is drawn from ``p(k | c) = sum_i w_i(c) r_ik``, the responsibilities of
  the training cases weighted by how well each matches ``c``, so an LGG request draws from the
  clusters of LGG cases, not from one of HGG cases (the encoder that the mixture is fitted to does
  not see the conditions);
- generation (:mod:`gliomagen.generation.fill`): a condition the request leaves unset is taken
  from a training case drawn with the same weights given the conditions that are set, i.e. from
  the training cases' joint distribution given the set ones.

The weights (:func:`donor_log_weights`) are a product kernel, written by hand because it mixes
exact matches of categories with a Gaussian kernel on standardised numbers (no library kernel
does both on encoded rows): a categorical field that is set must match (a case that does not is
down-weighted by ``exp(MISMATCH_LOG)`` per field, so the cases with the fewest mismatches are used
when no training case has the combination), and a continuous field that is set weighs each case by ``exp(-d^2 / 2h^2)`` with
``d`` the difference in training standard deviations and ``h = BANDWIDTH``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

MISMATCH_LOG = -1000.0
"""Log-weight of a training case per set categorical field it does not match: far below any
continuous distance, so categories decide first and the kernel ranks cases among equals."""

BANDWIDTH = 0.5
"""Gaussian kernel width on a set continuous field, in training standard deviations."""


def donor_log_weights(
    cat: torch.Tensor,
    cont: torch.Tensor,
    case_cat: torch.Tensor,
    case_cont: torch.Tensor,
    unknown: Sequence[int],
    cont_set: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log-weights ``[N, n]`` (normalised over the ``n`` training cases) of each request row.

    Args:
        cat: ``[N, n_cat]`` requested category codes; a code equal to ``unknown[j]`` is unset.
        cont: ``[N, n_cont]`` requested standardised values.
        case_cat: ``[n, n_cat]`` the training cases' codes.
        case_cont: ``[n, n_cont]`` the training cases' standardised values.
        unknown: the 'unknown' code of each categorical field (its number of categories).
        cont_set: ``[N, n_cont]`` bool, which continuous values are set (default: all).

    Returns:
        ``log w [N, n]`` with ``logsumexp`` 0 along the cases.

    Example:
        >>> w = donor_log_weights(torch.tensor([[1], [2]]), torch.zeros(2, 0),
        ...                       torch.tensor([[0], [1], [1]]), torch.zeros(3, 0), [2]).exp()
        >>> [[round(v, 3) for v in row] for row in w.tolist()]
        [[0.0, 0.5, 0.5], [0.333, 0.333, 0.333]]
    """
    n = case_cat.shape[0]
    logw = torch.zeros(cat.shape[0], n, dtype=torch.float64, device=cat.device)
    if cat.shape[1]:
        unk = torch.as_tensor(list(unknown), device=cat.device).view(1, -1)
        is_set = (cat != unk).unsqueeze(1)  # [N, 1, n_cat]
        miss = (cat.unsqueeze(1) != case_cat.unsqueeze(0)) & is_set  # [N, n, n_cat]
        logw += miss.sum(2).double() * MISMATCH_LOG
    if cont.shape[1]:
        d = (cont.unsqueeze(1).double() - case_cont.unsqueeze(0).double()) / BANDWIDTH
        sq = d.square()
        if cont_set is not None:
            sq = sq * cont_set.unsqueeze(1).double()
        logw -= 0.5 * sq.sum(2)
    return logw - torch.logsumexp(logw, dim=1, keepdim=True)


__all__ = ["BANDWIDTH", "MISMATCH_LOG", "donor_log_weights"]
