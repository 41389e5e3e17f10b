"""genmodels: likelihood-based deep generative models behind one interface, in comparable units.

Public API::

    from genmodels import load_dataset, DDPM, DDPMConfig, from_pretrained, nats_to_bpd

Every model is a :class:`GenerativeModel` with ``loss(x)``, ``nll(x)`` (nats) and ``sample(n)``;
see ``DESIGN.md``.
"""

from .autoregressive.pixelcnn import PixelCNN, PixelCNNConfig  # registers "pixelcnn"
from .autoregressive.wavenet import WaveNet, WaveNetConfig  # registers "wavenet"
from .core import DataSpec, GenerativeModel, NLLOutput, NoLikelihoodError, discrete_nll_from_density, nats_to_bpd
from .diffusion.ddpm import DDPM, DDPMConfig  # registers "ddpm"
from .diffusion.schedules import DiscreteSchedule, GammaConfig, ScheduleConfig
from .diffusion.vdm import VDM, VDMConfig  # registers "vdm"
from .flows import NICE, Glow, GlowConfig, NICEConfig, RealNVP, RealNVPConfig  # registers "nice", "realnvp", "glow"
from .registry import MODELS
from .score.ebm import EBM, EBMConfig  # registers "ebm"
from .score.ncsn import NCSN, NCSNConfig  # registers "ncsn"
from .vae import HVAE, VAE, HVAEConfig, VAEConfig  # registers "vae", "hvae"

__all__ = [
    "DataSpec", "GenerativeModel", "NLLOutput", "NoLikelihoodError", "nats_to_bpd", "discrete_nll_from_density",
    "DDPM", "DDPMConfig", "DiscreteSchedule", "ScheduleConfig", "MODELS",
    "VDM", "VDMConfig", "GammaConfig",
    "VAE", "VAEConfig", "HVAE", "HVAEConfig",
    "EBM", "EBMConfig", "NCSN", "NCSNConfig",
    "NICE", "NICEConfig", "RealNVP", "RealNVPConfig", "Glow", "GlowConfig",
    "PixelCNN", "PixelCNNConfig", "WaveNet", "WaveNetConfig",
    "load_dataset", "from_pretrained",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    # data and checkpoint pull in numpy/PIL/safetensors: import them on first use
    if name == "load_dataset":
        from .data import load_dataset
        return load_dataset
    if name == "from_pretrained":
        from .checkpoint import from_pretrained
        return from_pretrained
    raise AttributeError(name)
