"""genmodels: likelihood-based deep generative models behind one interface, in comparable units.

Public API::

    from genmodels import load_dataset, DDPM, DDPMConfig, from_pretrained, nats_to_bpd, MODELS

Every model is a :class:`GenerativeModel` with ``loss(x)``, ``nll(x)`` (nats) and ``sample(n)``, and declares
what else it can do (samplers, NFE, likelihood, evaluation options, pictures); see ``DESIGN.md``. The names are
imported on first use (PEP 562), so ``import genmodels`` (and ``genmodels --help``) does not load torch or any
family; :data:`genmodels.families.MODELS` lists the families.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_WHERE = {
    "DataSpec": "core", "GenerativeModel": "core", "NLLOutput": "core", "NoLikelihoodError": "core",
    "SampleOutput": "core", "EvalOptions": "core", "nats_to_bpd": "core", "discrete_nll_from_density": "core",
    "MODELS": "families",
    "DDPM": "diffusion.ddpm", "DDPMConfig": "diffusion.ddpm",
    "DiscreteSchedule": "diffusion.schedules", "ScheduleConfig": "diffusion.schedules",
    "GammaConfig": "diffusion.schedules",
    "VDM": "diffusion.vdm", "VDMConfig": "diffusion.vdm",
    "VAE": "vae.vae", "VAEConfig": "vae.vae", "HVAE": "vae.hvae", "HVAEConfig": "vae.hvae",
    "EBM": "score.ebm", "EBMConfig": "score.ebm", "NCSN": "score.ncsn", "NCSNConfig": "score.ncsn",
    "NICE": "flows.flow", "NICEConfig": "flows.flow", "RealNVP": "flows.flow", "RealNVPConfig": "flows.flow",
    "Glow": "flows.flow", "GlowConfig": "flows.flow",
    "PixelCNN": "autoregressive.pixelcnn", "PixelCNNConfig": "autoregressive.pixelcnn",
    "WaveNet": "autoregressive.wavenet", "WaveNetConfig": "autoregressive.wavenet",
    "load_dataset": "data", "from_pretrained": "checkpoint",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    """Import a public name from its module on first use (``genmodels.DDPM`` -> ``genmodels.diffusion.ddpm``)."""
    if name not in _WHERE:
        raise AttributeError(f"module 'genmodels' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
