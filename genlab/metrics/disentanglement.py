"""Mutual Information Gap (MIG) of a representation against ground-truth factors.

Chen, Li, Grosse & Duvenaud 2018, "Isolating Sources of Disentanglement in Variational
Autoencoders", with the settings of disentanglement_lib (Locatello et al. 2019, "Challenging Common
Assumptions in the Unsupervised Learning of Disentangled Representations"), whose `_compute_mig`
this follows step by step (disentanglement_lib itself needs TensorFlow 1 and gin, so it is not a
dependency; the discretisation is tested against numpy's histogram + digitize): 10,000 points; the representation is the encoder's mean μ(x); each
latent dimension is discretised into 20 equal-width bins between its min and max (np.histogram +
np.digitize); ground-truth factors are their integer classes. Then, with discrete mutual information
and entropy in nats (sklearn's mutual_info_score):

    I(z_j; v_k) = Σ_{a,b} p(a, b) log [p(a, b) / (p(a) p(b))]        (from the contingency table)
    MIG = (1/K) Σ_k [I(z_{j*}; v_k) − I(z_{j°}; v_k)] / H(v_k)

where j* and j° are the latents with the largest and second-largest information about factor v_k.
MIG is 1 when each factor is captured by one latent alone, and 0 when none is or when two latents
share it equally. With 20 bins a factor of more than 20 classes (shapes' orientation, 40; position,
32) cannot reach I = H(v_k), so even the true factors score below 1 on shapes (~0.9).
"""

from __future__ import annotations

import torch

MIG_POINTS = 10_000  # disentanglement_lib's mig.num_train
MIG_BINS = 20  # disentanglement_lib's discretizer.num_bins


def histogram_discretize(codes: torch.Tensor, bins: int = MIG_BINS) -> torch.Tensor:
    """Integer bins (N, L) of each column of codes (N, L): np.digitize(x, np.histogram(x, bins)[1][:-1])."""
    codes = codes.double()
    low, high = codes.min(0).values, codes.max(0).values
    # np.histogram widens an empty range to [x − 0.5, x + 0.5]: one bin holds every value.
    low, high = torch.where(low == high, low - 0.5, low), torch.where(low == high, high + 0.5, high)
    discrete = torch.empty(codes.shape, dtype=torch.long)
    for j in range(codes.shape[1]):
        edges = torch.linspace(float(low[j]), float(high[j]), bins + 1, dtype=torch.float64)[:-1]
        discrete[:, j] = torch.searchsorted(edges, codes[:, j].contiguous(), right=True)
    return discrete


def mutual_information(a: torch.Tensor, b: torch.Tensor) -> float:
    """Discrete mutual information (nats) between two integer labelings of the same N points."""
    _, a = torch.unique(a, return_inverse=True)
    _, b = torch.unique(b, return_inverse=True)
    joint = torch.zeros(int(a.max()) + 1, int(b.max()) + 1, dtype=torch.float64)
    joint.index_put_((a, b), torch.ones(len(a), dtype=torch.float64), accumulate=True)
    joint /= len(a)
    outer = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
    nonzero = joint > 0
    return float((joint[nonzero] * (joint[nonzero] / outer[nonzero]).log()).sum())


def mig(codes: torch.Tensor, factors: torch.Tensor, bins: int = MIG_BINS) -> dict:
    """MIG of codes (N, L) against integer factor classes (N, K); also the gap of each factor."""
    if codes.shape[1] < 2:
        raise ValueError("MIG compares the two most informative latents: it needs a representation of at least 2 dimensions")
    discrete = histogram_discretize(codes, bins)
    info = torch.tensor([[mutual_information(discrete[:, j], factors[:, k]) for k in range(factors.shape[1])]
                         for j in range(discrete.shape[1])], dtype=torch.float64)
    entropy = torch.tensor([mutual_information(factors[:, k], factors[:, k]) for k in range(factors.shape[1])],
                           dtype=torch.float64)
    top2 = info.topk(2, dim=0).values
    gaps = (top2[0] - top2[1]) / entropy
    return {"mig": float(gaps.mean()), "per_factor": gaps.tolist()}


@torch.no_grad()
def mean_codes(encode, data, n: int, generator: torch.Generator, batch_size: int, device: torch.device):
    """μ(x) (n, L) of n images drawn uniformly from `data` (with replacement, as disentanglement_lib
    samples factors), and their factor classes (n, K). `encode(x)` returns the codes μ(x)."""
    index = torch.randint(0, data.num_images, (n,), generator=generator)
    codes = [encode(data.images(part).to(device).float().div(255)).cpu() for part in index.split(batch_size)]
    return torch.cat(codes), data.factors(index)
