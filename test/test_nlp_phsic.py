"""Pointwise HSIC (Yokoi et al. 2018): the closed form equals its kernel form, averages to HSIC, and tells
co-occurring pairs from independent ones."""
import pytest
import torch

from koba_ros.nlp.phsic import PointwiseHSIC
from koba_ros.nlp.repro.phsic import roc_auc


def test_feature_form_equals_the_centred_kernel_form_and_averages_to_hsic():
    g = torch.Generator().manual_seed(0)
    phi, psi = torch.randn(50, 6, generator=g), torch.randn(50, 4, generator=g)
    model = PointwiseHSIC(phi, psi)
    x, y = torch.randn(7, 6, generator=g), torch.randn(7, 4, generator=g)
    k = (x - phi.mean(0)) @ (phi - phi.mean(0)).T            # centred linear kernels k~(x, x_i), l~(y, y_i)
    l_ = (y - psi.mean(0)) @ (psi - psi.mean(0)).T
    assert torch.allclose(model(x, y), (k.double() * l_.double()).mean(1), atol=1e-9)
    assert model(phi, psi).mean().item() == pytest.approx(model.hsic(), rel=1e-9)


def test_co_occurring_pairs_score_above_independent_ones():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 8, generator=g)
    mix = torch.randn(8, 5, generator=g)
    y = x @ mix + 0.3 * torch.randn(400, 5, generator=g)      # y depends on x
    model = PointwiseHSIC(x[:300], y[:300])
    true = model(x[300:], y[300:])
    false = model(x[300:], y[300:][torch.randperm(100, generator=g)])
    assert roc_auc(true, false) > 0.9
    assert PointwiseHSIC(x[:300], torch.randn(300, 5, generator=g)).hsic() < 0.1 * model.hsic()
    with pytest.raises(ValueError, match="paired"):
        PointwiseHSIC(x[:3], y[:4])


def test_roc_auc_counts_ties_half():
    assert roc_auc(torch.tensor([3.0, 2.0]), torch.tensor([1.0, 0.0])) == 1.0
    assert roc_auc(torch.tensor([1.0]), torch.tensor([1.0])) == 0.5
    assert roc_auc(torch.tensor([0.0]), torch.tensor([1.0, -1.0])) == 0.5
