"""Pointwise HSIC (Yokoi, Kobayashi, Fukumizu, Suzuki & Inui 2018, "Pointwise HSIC: A Linear-Time Kernelized
Co-occurrence Norm for Sparse Linguistic Expressions", EMNLP): how strongly x and y co-occur, for expressions too
sparse to count (every sentence is new), estimated in closed form from paired data.

With feature maps phi (for x) and psi (for y), means over the n training pairs and their cross-covariance

    C = (1/n) sum_i (phi(x_i) - mean phi) (psi(y_i) - mean psi)^T

PHSIC(x, y) = (phi(x) - mean phi)^T C (psi(y) - mean psi). It is the pointwise term of HSIC (HSIC = the mean of PHSIC
over the training pairs), and, written with the centred kernels k~ and l~ of the feature maps,

    PHSIC(x, y) = (1/n) sum_i k~(x, x_i) l~(y, y_i):

x and y co-occur when the training pairs whose x_i resemble x have y_i that resemble y (PMI's kernel analogue). The
feature form costs O(n d1 d2) to fit and O(d1 d2) per score: linear in the data, no training loop.
"""
from __future__ import annotations

import torch


class PointwiseHSIC:
    def __init__(self, phi: torch.Tensor, psi: torch.Tensor):
        """Fit on paired features phi [n, d1], psi [n, d2] (row i: a co-occurring pair)."""
        if phi.ndim != 2 or psi.ndim != 2 or len(phi) != len(psi):
            raise ValueError(f"need paired [n, d] features, got {tuple(phi.shape)} and {tuple(psi.shape)}")
        if len(phi) < 2:
            raise ValueError("PHSIC needs at least two pairs")
        if not (torch.isfinite(phi).all() and torch.isfinite(psi).all()):  # one NaN makes C, and every score, NaN
            raise ValueError("PHSIC's features must be finite (a NaN or inf is in the training features)")
        phi, psi = phi.double(), psi.double()
        self.mean_x, self.mean_y = phi.mean(0), psi.mean(0)
        self.cross_covariance = (phi - self.mean_x).T @ (psi - self.mean_y) / len(phi)   # [d1, d2]

    def __call__(self, phi: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """PHSIC of each pair (phi[m], psi[m]) [m]. The pairs are checked: broadcasting would score 1 x against 5 y
        as 5 pairs silently."""
        width_x, width_y = len(self.mean_x), len(self.mean_y)
        if phi.ndim != 2 or psi.ndim != 2 or len(phi) != len(psi) or phi.shape[1] != width_x \
                or psi.shape[1] != width_y:
            raise ValueError(f"need paired features [m, {width_x}] and [m, {width_y}], got {tuple(phi.shape)} and "
                             f"{tuple(psi.shape)}")
        centred_x, centred_y = phi.double() - self.mean_x, psi.double() - self.mean_y
        return ((centred_x @ self.cross_covariance) * centred_y).sum(-1)

    def hsic(self) -> float:
        """HSIC of the training pairs: the squared Frobenius norm of C, the mean PHSIC over them."""
        return float((self.cross_covariance ** 2).sum())
