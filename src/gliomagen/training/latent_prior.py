"""A latent prior fitted to the encoded training cases (``model.latent_prior=fitted``).

A VAE-GAN's generator learns to decode the latents its encoder gives the real cases; with a weak
KL term (the only setting in which it keeps the tumours' inner structure on a few dozen cases)
those latents fill a correlated, lower-dimensional part of latent space, and ``N(0, I)`` draws
mostly fall outside it. Measured on the phantom cohort at 32^3 (``benchmarks/conditioning.py``):
the same generator that rebuilt 98-100% of the training cases faithfully gave 16% faithful
high-grade samples from ``N(0, I)`` and 67-75% from a full-covariance Gaussian fitted to the
encoded cases (a diagonal one: 37%). This is the "ex-post density estimation" of two-stage VAEs
(Dai & Wipf 2019; Ghosh et al. 2020): fit the aggregate posterior after (or during) training and
sample from the fit.

The fit is the moment-matched Gaussian of the aggregate posterior ``(1/n) sum_i N(mu_i, diag s_i^2)``
over the training cases: mean ``mean_i mu_i``, covariance ``cov_i(mu_i) + mean_i diag(s_i^2)``
(plus ``JITTER`` on the diagonal); one Gaussian for all cases (with a mixture, below, the
component is drawn given the conditions). It is stored in the mapping network's ``z_mean`` and
``z_tril`` buffers (a Cholesky factor; :class:`gliomagen.models.latent_prior.LatentPrior`), so a standard-normal seed maps to a draw from the fit.

The training loop refits ``G_ema`` (from ``G_ema``'s own encoder) before every sample montage,
validation and checkpoint, through :class:`PriorSchedule`. ``G`` itself keeps ``N(0, I)`` (training is then unchanged by the
option) unless ``train.latent_prior_every = N``: then ``G`` refits its own prior from its own
encoder every N steps and the adversarial loss judges draws from the fit, which is what ``G_ema``
will sample (measured better on the phantoms: 0.81 / 0.91 faithful HGG / LGG after 11 minutes
against 0.73 / 0.93 without, from the same checkpoint).

A mixture (``model.latent_prior_components = K > 1``): one Gaussian spreads its mass over the
space *between* clusters of encoded cases, and a generator decodes such in-between latents as
blends of the clusters. Measured on the phantoms: most failed low-grade samples of a 90-minute
run held two tumours, one in each hemisphere, where every training case has one. The mixture is
a ``K``-component Gaussian mixture with one shared ("tied") covariance, fitted by EM to the
posterior means (:class:`sklearn.mixture.GaussianMixture`); the shared covariance, plus the mean
posterior variance as above, sets each component's spread. ``K = 1`` is the single Gaussian.
The encoder does not see the conditions, so a component may hold cases of one grade only; each
fit also stores the training cases' conditions and responsibilities (:func:`responsibilities`),
and a draw under given conditions picks its component among those cases' clusters
(:mod:`gliomagen.models.case_table`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from gliomagen.training.batches import N_CLASSES, TrainingData

JITTER = 1e-4  # added to the covariance's diagonal (relative to a unit-variance prior)


@torch.no_grad()
def encode_cases(
    G: Any, data: TrainingData, device: torch.device, batch: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances ``[n, z_dim]`` (float32, CPU) of the training cases.

    ``G.encoder`` reads images and one-hot masks batched as training batches them
    (:meth:`TrainingData.collate_real`), the cases being ``data.train_index``. An encoder on a
    coarser grid than the store's (a hierarchical model's) reads the cases' low-resolution view,
    built once (:meth:`TrainingData.low_cases`): what it would compute from the full grid.
    """
    enc = G.encoder
    if enc is None:
        raise ValueError("the latent prior is fitted from the encoder: the generator has none")
    was_training = enc.training
    enc.eval()
    rows = data.train_index
    grid = tuple(int(s) for s in getattr(enc, "size", data.size))
    low = data.low_cases(data.size[0] // grid[0]) if grid != tuple(data.size) else None
    mus, logvars = [], []
    for s in range(0, len(rows), batch):
        if low is None:
            items = [data.store[int(i)] for i in rows[s : s + batch]]
            img, onehot = data.collate_real(items, device)  # [b, C, *S], [b, 4, *S]
        else:
            img = low[0][s : s + batch].to(device)
            onehot = F.one_hot(low[1][s : s + batch].long(), N_CLASSES).movedim(-1, 1).float()
            onehot = onehot.to(device)
        mu, logvar = enc(img, onehot)
        mus.append(mu.float().cpu())
        logvars.append(logvar.float().cpu())
    enc.train(was_training)
    return torch.cat(mus), torch.cat(logvars)


def gaussian_of_posterior(mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The moment-matched Gaussian of ``(1/n) sum_i N(mu_i, diag exp(logvar_i))``.

    Args:
        mu: ``[n, z_dim]`` posterior means.
        logvar: ``[n, z_dim]`` posterior log-variances.

    Returns:
        ``(mean [z_dim], tril [z_dim, z_dim])`` float32 with ``tril @ tril.T`` the covariance
        ``cov(mu) + mean(exp(logvar)) + JITTER * I`` (``cov`` with divisor ``n``, so one case
        gives its own posterior).
    """
    if mu.ndim != 2 or mu.shape != logvar.shape or len(mu) == 0:
        raise ValueError(f"need [n, z_dim] means and log-variances, got {list(mu.shape)} and {list(logvar.shape)}")
    m, v = mu.double(), logvar.double().exp()
    mean = m.mean(0)
    centred = m - mean
    cov = centred.T @ centred / len(m) + torch.diag(v.mean(0))
    cov = cov + JITTER * torch.eye(cov.shape[0], dtype=cov.dtype)
    return mean.float(), torch.linalg.cholesky(cov).float()


def mixture_of_posterior(
    mu: torch.Tensor, logvar: torch.Tensor, components: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A ``components``-Gaussian mixture with a shared covariance fitted to the posteriors.

    EM (:class:`sklearn.mixture.GaussianMixture`, ``covariance_type="tied"``, 4 restarts from
    k-means, ``seed``) on the means ``mu``; the shared covariance gains ``mean(exp(logvar))`` on
    its diagonal as in :func:`gaussian_of_posterior`. ``components`` is capped at the number of
    distinct cases; with 1 the result is :func:`gaussian_of_posterior`'s.

    Returns:
        ``(mean [z_dim], tril [z_dim, z_dim], offsets [K, z_dim], weights [K])`` float32: the
        mixture's overall mean, the Cholesky factor of the shared covariance, each component's
        mean less ``mean``, and the mixture weights.
    """
    k = max(1, min(int(components), len(torch.unique(mu, dim=0))))
    if k == 1:
        mean, tril = gaussian_of_posterior(mu, logvar)
        return mean, tril, torch.zeros(1, mu.shape[1]), torch.ones(1)
    # scikit-learn: only with model.latent_prior_components > 1
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(
        k, covariance_type="tied", reg_covar=JITTER, n_init=4, random_state=seed, max_iter=200
    ).fit(mu.double().numpy())
    means = torch.from_numpy(gm.means_)  # [K, z_dim] float64
    weights = torch.from_numpy(gm.weights_)
    cov = torch.from_numpy(gm.covariances_) + torch.diag(logvar.double().exp().mean(0))
    mean = (weights[:, None] * means).sum(0)
    weights = weights / weights.sum()
    return (
        mean.float(),
        torch.linalg.cholesky(cov).float(),
        (means - mean).float(),
        weights.float(),
    )


def responsibilities(
    mu: torch.Tensor, tril: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor, mean: torch.Tensor
) -> torch.Tensor:
    """``p(k | mu_i) [n, K]``: each encoded case's posterior over the mixture's components,
    under the prior as it is set (shared covariance ``tril @ tril.T``, means ``mean + offsets``)."""
    components = torch.distributions.MultivariateNormal(
        (mean + offsets).double(), scale_tril=tril.double()
    )  # K Gaussians sharing one covariance
    logp = components.log_prob(mu.double().unsqueeze(1)) + weights.double().log()  # [n, K]
    return torch.softmax(logp, dim=1).float()


@torch.no_grad()
def fit_latent_prior(
    G: Any, data: TrainingData, device: torch.device, components: int = 1
) -> dict[str, float]:
    """Fit ``G``'s latent prior to its encoder's view of the training cases; set it in place.

    ``components > 1`` fits a mixture (:func:`mixture_of_posterior`). ``G`` also keeps the
    training cases' conditions and (with a mixture) their responsibilities
    (:func:`responsibilities`), so that its draws follow their conditions
    (:mod:`gliomagen.models.case_table`).

    Returns:
        A summary for the log: ``{"prior_mean_norm", "prior_std_mean", "prior_cases",
        "prior_components", "prior_min_weight"}`` (the fitted mean's norm, the mean
        per-dimension standard deviation of the (shared) covariance, the cases encoded, the
        mixture's components and its smallest weight).
    """
    mu, logvar = encode_cases(G, data, device)
    mean, tril, offsets, weights = mixture_of_posterior(mu, logvar, components)
    G.mapping.set_prior(mean.to(device), tril.to(device), offsets.to(device), weights.to(device))
    resp = responsibilities(mu, tril, offsets, weights, mean) if len(weights) > 1 else None
    rows = torch.as_tensor(data.train_index)
    G.mapping.set_case_table(data.cat[rows], data.cont[rows], resp)
    std = tril.square().sum(1).sqrt()  # per-dimension standard deviations
    return {
        "prior_mean_norm": float(mean.norm()),
        "prior_std_mean": float(std.mean()),
        "prior_cases": float(len(mu)),
        "prior_components": float(len(weights)),
        "prior_min_weight": float(weights.min()),
    }


class PriorSchedule:
    """When a run refits its latent priors (``model.latent_prior=fitted``): the loop's one seam.

    ``G_ema``'s prior is refitted from its own encoder once per step, before it samples (montage,
    validation, checkpoint; main worker only): :meth:`refresh`. ``G``'s own prior is refitted every
    ``train.latent_prior_every`` steps, on every worker (they fit the same weights):
    :meth:`before_step`.

    Args:
        cfg: the run configuration.
        data: the training data.
        device: where the encoder runs.
        log: where a fit's summary goes (the run log).
        is_main: whether this worker is the main one.
    """

    def __init__(
        self,
        cfg: Any,
        data: TrainingData,
        device: torch.device,
        log: Callable[[str], None],
        is_main: bool = True,
    ) -> None:
        self.data, self.device, self.log, self.is_main = data, device, log, is_main
        self.fitted = cfg.model.latent_prior == "fitted"
        self.components = int(cfg.model.latent_prior_components)
        self.every = int(cfg.train.latent_prior_every)
        self._refreshed_at = -1  # step of G_ema's last fit

    def before_step(self, G: Any, step: int) -> None:
        """Refit ``G``'s prior at every ``train.latent_prior_every``-th step (G's adversarial draws
        then come from the fit)."""
        if self.every and step % self.every == 0:
            fit_latent_prior(G, self.data, self.device, self.components)

    def refresh(self, G_ema: Any, step: int) -> None:
        """Refit ``G_ema``'s prior once per step, before use, and log the fit."""
        if not self.is_main or not self.fitted or self._refreshed_at == step:
            return
        stats = fit_latent_prior(G_ema, self.data, self.device, self.components)
        self._refreshed_at = step
        mixture = (
            f", {int(stats['prior_components'])} components "
            f"(smallest weight {stats['prior_min_weight']:.3f})"
            if stats["prior_components"] > 1
            else ""
        )
        self.log(
            f"step {step} latent prior fitted to {int(stats['prior_cases'])} encoded cases: "
            f"|mean| {stats['prior_mean_norm']:.3f}, mean std {stats['prior_std_mean']:.3f}"
            + mixture
        )


__all__ = [
    "JITTER",
    "PriorSchedule",
    "encode_cases",
    "fit_latent_prior",
    "gaussian_of_posterior",
    "mixture_of_posterior",
    "responsibilities",
]
