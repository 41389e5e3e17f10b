"""The conditional likelihood report against a model whose p(x | y) is known exactly: two 1-D Gaussian classes.

With x | y ~ N(μ_y, 1), p(y) the label frequencies, the marginal is the Gaussian mixture and the generative
classifier is the Bayes classifier; the report must reproduce both to float precision. A model whose NLL carries
estimator noise shows why every class shares the noise: the class differences are then exact.
"""

from __future__ import annotations

import math

import pytest
import torch

from genmodels.core import Conditioning, DataSpec, GenerativeModel, NLLOutput
from genmodels.metrics.conditional import class_nll_matrix, conditional_report, label_log_prior

SPEC = DataSpec("two-gaussians", (1,), num_classes=2)
MU = torch.tensor([-1.0, 1.5, 0.0], dtype=torch.float64)  # class 0, class 1, the null label's reading


class GaussianClasses(GenerativeModel):
    """−log N(x; μ_y, 1) per example, plus optional noise ``noise·ξ`` (ξ ~ N(0, 1) from the generator) that is the
    same for every class when the generator is: a stand-in for a stochastic bound."""

    def __init__(self, noise: float = 0.0):
        super().__init__()
        self.spec = SPEC
        self.set_conditioning(Conditioning(num_classes=2))
        self.noise = noise

    def nll_terms(self, x, generator=None, y=None, **kw):
        y = self.labels_or_null(y, len(x))
        mu = MU[y].to(x.dtype)
        nll = 0.5 * (x[:, 0] - mu) ** 2 + 0.5 * math.log(2 * math.pi)
        if self.noise:
            nll = nll + self.noise * torch.randn(len(x), generator=generator, dtype=x.dtype)
        return NLLOutput(nll=nll, kind="exact")


def _data(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.3).long()  # p(y = 1) = 0.3
    x = (MU[y] + torch.randn(n, generator=g, dtype=torch.float64))[:, None]
    return x, y


def test_marginal_and_classifier_are_the_exact_mixture_and_bayes_rule():
    x, y = _data()
    model = GaussianClasses()
    m = class_nll_matrix(model, x, batch_size=64)
    assert m.shape == (len(x), 3)
    prior = label_log_prior(y, 2)
    rep = conditional_report(m, y, prior, dim=1)
    normal = torch.distributions.Normal(MU[:2], 1.0)
    logp = normal.log_prob(x) + prior  # [N, 2]
    exact_marginal = -torch.logsumexp(logp, dim=1)
    assert rep.marginal_bpd == pytest.approx(exact_marginal.mean().item() / math.log(2), rel=1e-12)
    bayes = logp.argmax(dim=1)
    assert rep.accuracy == pytest.approx((bayes == y).double().mean().item())
    assert 0.7 < rep.accuracy < 1.0  # overlapping classes: the test can tell a wrong argmax
    cond = -normal.log_prob(x).gather(1, y[:, None])[:, 0]
    assert rep.conditional_bpd == pytest.approx(cond.mean().item() / math.log(2), rel=1e-12)
    # the information the label carries: ≥ 0 on average, ≤ H(y) for an exact model
    h_y = -(prior.exp() * prior).sum().item()
    assert 0 < rep.mutual_information_nats < h_y
    assert sum(map(sum, rep.confusion)) == len(x)
    assert rep.null_bpd == pytest.approx((0.5 * x[:, 0] ** 2 + 0.5 * math.log(2 * math.pi)).mean().item()
                                         / math.log(2), rel=1e-12)


def test_shared_noise_makes_the_classifier_blind_to_the_estimator_noise():
    x, y = _data()
    exact = conditional_report(class_nll_matrix(GaussianClasses(), x), y, label_log_prior(y, 2), dim=1)
    noisy = conditional_report(class_nll_matrix(GaussianClasses(noise=5.0), x), y, label_log_prior(y, 2), dim=1)
    assert noisy.accuracy == exact.accuracy  # the same ξ for each class cancels in the argmax
    assert noisy.confusion == exact.confusion


def test_unconditional_model_is_refused():
    class Plain(GenerativeModel):
        spec = SPEC

    with pytest.raises(ValueError, match="unconditional"):
        class_nll_matrix(Plain(), torch.zeros(2, 1))


def test_label_checks_name_the_range():
    model = GaussianClasses()
    with pytest.raises(ValueError, match=r"class 5 is out of range: this model has classes 0\.\.1"):
        model.check_label(torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="1-D integer"):
        model.check_label(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="3 class labels for 2 examples"):
        model.check_label(torch.tensor([0, 1, 1]), 2)
    assert model.labels_or_null(None, 3).tolist() == [2, 2, 2]


def test_label_dropout_rate():
    model = GaussianClasses()
    model.p_uncond = 0.25
    y = model.drop_labels(torch.zeros(20000, dtype=torch.long), 20000, torch.Generator().manual_seed(0))
    rate = (y == model.null_label).double().mean().item()
    assert abs(rate - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 20000)
    assert set(y.tolist()) == {0, 2}
