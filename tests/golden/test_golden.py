"""Golden values of every registered family: a tiny seeded run (two optimizer steps, the test NLL of four
examples, a few sample values), recorded before the interface redesign (issue 14) so that moving code
changes no number silently. Regenerate only on purpose: ``python tests/golden/test_golden.py --regen``.

Each case builds the family's preset for a small spec, trains two AdamW steps on fixed random data, and
records the two losses, the per-example NLL and its terms (where the family has a likelihood) and the first
values of a small seeded sample. Everything is compared to 1e-6 (absolute and relative).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).with_name("families.json")

IMAGE = dict(name="digits", event_shape=(1, 8, 8), n_bins=17)
TOY = dict(name="moons", event_shape=(2,), n_bins=None, value_range=(float("-inf"), float("inf")))
SEQ = dict(name="seq", event_shape=(1, 64), n_bins=256)

# (case, family, spec, sampling keywords of ``model.sample``): cheap settings of each family's samplers
CASES = [
    ("ddpm-image", "ddpm", IMAGE, {"sampler": "ddim", "steps": 3}),
    ("ddpm-image-dpm", "ddpm", IMAGE, {"sampler": "dpm++", "steps": 3}),
    ("ddpm-toy", "ddpm", TOY, {"sampler": "ancestral", "steps": 4}),
    ("vdm-image", "vdm", IMAGE, {"sampler": "ddim", "steps": 3}),
    ("vae-image", "vae", IMAGE, {}),
    ("hvae-image", "hvae", IMAGE, {}),
    ("ebm-toy", "ebm", TOY, {"steps": 5}),
    ("ncsn-toy", "ncsn", TOY, {"steps": 1}),
    ("nice-image", "nice", IMAGE, {}),
    ("realnvp-toy", "realnvp", TOY, {}),
    ("glow-image", "glow", IMAGE, {}),
    ("pixelcnn-image", "pixelcnn", IMAGE, {}),
    ("wavenet-seq", "wavenet", SEQ, {}),
    ("flow_matching-image", "flow_matching", IMAGE, {"sampler": "midpoint", "steps": 3}),
    ("flow_matching-toy", "flow_matching", TOY, {"sampler": "heun", "steps": 3}),
]


LOOSE: dict[str, dict[str, float]] = {
    "glow-image": {"losses": 1e-3, "nll": 1e-3, "sample": 1e-3},
    "flow_matching-image": {"nll": 3e-3},
    "flow_matching-toy": {"nll": 1e-4},
}
"""Keys of cases compared to a looser tolerance than 1e-6 (``nll`` covers its terms too), with the reason:

- Glow's evaluation inverts its 1×1 convolutions (LU, LAPACK), whose float32 rounding differs between CPUs
  (recorded on an AMD EPYC; an Intel Xeon gives NLLs 9e-5 apart, samples 1e-3 apart, with the two training
  losses still equal to 5e-7).
- Flow matching's NLL comes from an adaptive dopri5 solve at rtol = atol = 1e-5, so it is defined only to the
  solver's accuracy: a CPU without AVX-512 rounds the network differently, the step-size control takes other
  steps, and the end state moves. Measured on such a CPU against values recorded on one with AVX-512: the 8×8
  image's prior and divergence terms 1.0e-3 nats apart (64 dimensions; the NLL, ~202 nats, 6e-4 apart), the 2-D
  toy's 3e-6 apart. Its losses and samples (fixed steps) stay within 1e-6."""


def _data(spec, n: int, seed: int) -> torch.Tensor:
    """``[n, *event_shape]`` fixed random data: levels on [−1, 1] for discrete specs, normal otherwise."""
    g = torch.Generator().manual_seed(seed)
    if spec.n_bins is None:
        return torch.randn((n, *spec.event_shape), generator=g)
    k = torch.randint(0, spec.n_bins, (n, *spec.event_shape), generator=g)
    return 2 * k.float() / (spec.n_bins - 1) - 1


def run_case(family: str, spec_kw: dict, sample_kw: dict) -> dict:
    """The recorded values of one case (lists of floats)."""
    from genmodels.core import DataSpec, NoLikelihoodError
    from genmodels.families import MODELS

    spec = DataSpec(**spec_kw)
    entry = MODELS.get(family)
    torch.manual_seed(0)
    model = entry.build(entry.preset(spec), spec)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = _data(spec, 8, 1)
    g = torch.Generator().manual_seed(2)
    losses = []
    model.train()
    for _ in range(2):
        loss = model.loss(x, g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    out: dict = {"losses": losses}
    xt = _data(spec, 4, 3)
    try:
        with torch.no_grad():
            res = model.nll_terms(xt, torch.Generator().manual_seed(4))
        out["nll"] = res.nll.double().tolist()
        out["terms"] = {k: v.double().tolist() for k, v in sorted(res.terms.items())}
    except NoLikelihoodError:
        out["nll"] = None
    with torch.no_grad():
        s = model.sample(2, torch.Generator().manual_seed(5), **sample_kw)
    out["sample_shape"] = list(s.shape)
    flat = s.flatten().double()
    out["sample"] = [*flat[:6].tolist(), flat.mean().item(), flat.abs().mean().item()]  # values, mean, mean |x|
    return out


@pytest.mark.parametrize("case,family,spec,sample_kw", CASES, ids=[c[0] for c in CASES])
def test_golden(case, family, spec, sample_kw):
    """The tiny seeded run gives the recorded numbers (to 1e-6; :data:`LOOSE` for the keys listed there)."""
    golden = json.loads(GOLDEN.read_text())[case]
    got = run_case(family, spec, sample_kw)
    tol = {key: LOOSE.get(case, {}).get(key, 1e-6) for key in ("losses", "nll", "sample")}
    assert got["sample_shape"] == golden["sample_shape"]
    assert (got["nll"] is None) == (golden["nll"] is None)
    for key in ("losses", "nll", "sample"):
        if golden[key] is not None:
            torch.testing.assert_close(torch.tensor(got[key], dtype=torch.float64),
                                       torch.tensor(golden[key], dtype=torch.float64), rtol=tol[key], atol=tol[key],
                                       msg=lambda m: f"{case} {key}: {m}")  # noqa: B023  called at once, in this iteration
    if golden["nll"] is not None:
        assert sorted(got["terms"]) == sorted(golden["terms"])
        for k, v in golden["terms"].items():
            torch.testing.assert_close(torch.tensor(got["terms"][k], dtype=torch.float64),
                                       torch.tensor(v, dtype=torch.float64), rtol=tol["nll"], atol=tol["nll"])


if __name__ == "__main__":
    if "--regen" not in sys.argv:
        sys.exit("usage: python tests/golden/test_golden.py --regen   (rewrites families.json)")
    torch.set_num_threads(1)
    GOLDEN.write_text(json.dumps({c[0]: run_case(c[1], c[2], c[3]) for c in CASES}, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
