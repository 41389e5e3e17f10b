"""The one place that fills the model registry: one line per family.

Adding a family means one new folder (its model class, config dataclass and preset, declaring its capabilities
through :class:`~genmodels.core.GenerativeModel`) and one line here; ``tests/test_contract.py`` is the checklist
it must pass. Callers (the CLI, metrics, training) look families up here by name and never ask which family a
model is.

    >>> "ddpm" in MODELS and MODELS.get("ddpm").model_cls.has_likelihood
    True
"""

from __future__ import annotations

from .autoregressive.pixelcnn import PixelCNN, PixelCNNConfig
from .autoregressive.pixelcnn import default_config as pixelcnn_preset
from .autoregressive.wavenet import WaveNet, WaveNetConfig
from .autoregressive.wavenet import default_config as wavenet_preset
from .diffusion.ddpm import DDPM, DDPMConfig
from .diffusion.ddpm import default_config as ddpm_preset
from .diffusion.vdm import VDM, VDMConfig
from .diffusion.vdm import default_config as vdm_preset
from .flow_matching.model import FlowMatching, FlowMatchingConfig
from .flow_matching.model import default_config as flow_matching_preset
from .flows.flow import (
                         NICE,
                         Glow,
                         GlowConfig,
                         NICEConfig,
                         RealNVP,
                         RealNVPConfig,
                         default_glow_config,
                         default_nice_config,
                         default_realnvp_config,
)
from .registry import ModelEntry, Registry
from .score.ebm import EBM, EBMConfig
from .score.ebm import default_config as ebm_preset
from .score.ncsn import NCSN, NCSNConfig
from .score.ncsn import default_config as ncsn_preset
from .vae.hvae import HVAE, HVAEConfig
from .vae.vae import VAE, VAEConfig

__all__ = ["MODELS"]

MODELS: Registry[ModelEntry] = Registry("model")
"""Family name -> :class:`~genmodels.registry.ModelEntry` (config class, model class, preset)."""

MODELS.register("ddpm", ModelEntry(DDPMConfig, DDPM, ddpm_preset))
MODELS.register("vdm", ModelEntry(VDMConfig, VDM, vdm_preset))
MODELS.register("vae", ModelEntry(VAEConfig, VAE))
MODELS.register("hvae", ModelEntry(HVAEConfig, HVAE))
MODELS.register("ebm", ModelEntry(EBMConfig, EBM, ebm_preset))
MODELS.register("ncsn", ModelEntry(NCSNConfig, NCSN, ncsn_preset))
MODELS.register("nice", ModelEntry(NICEConfig, NICE, default_nice_config))
MODELS.register("realnvp", ModelEntry(RealNVPConfig, RealNVP, default_realnvp_config))
MODELS.register("glow", ModelEntry(GlowConfig, Glow, default_glow_config))
MODELS.register("pixelcnn", ModelEntry(PixelCNNConfig, PixelCNN, pixelcnn_preset))
MODELS.register("wavenet", ModelEntry(WaveNetConfig, WaveNet, wavenet_preset))
MODELS.register("flow_matching", ModelEntry(FlowMatchingConfig, FlowMatching, flow_matching_preset))
