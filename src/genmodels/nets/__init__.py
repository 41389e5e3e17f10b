"""Backbones that know nothing of the models: UNet, MLP, embeddings, coders, energy, coupling, masked and causal
nets."""

from __future__ import annotations

from torch import nn

__all__ = ["noise_conditional_net"]


def noise_conditional_net(spec, unet, mlp, family: str, num_labels: int | None = None) -> nn.Module:
    """The denoiser / score backbone of a noise-conditional model: a :class:`~genmodels.nets.unet.UNet` (config
    ``unet``) for images ``(C, H, W)``, an :class:`~genmodels.nets.mlp.MLP` (config ``mlp``) for vectors ``(D,)``;
    both map ``(x [B, *event_shape], noise level [B]) -> [B, *event_shape]``, and with ``num_labels`` (the label
    values of a class-conditional model, its null label included) ``(x, noise level, y [B]) -> [B, *event_shape]``.

    Raises:
        ValueError: for any other event shape, naming ``family``.
    """
    from .mlp import MLP
    from .unet import UNet

    if spec.is_image:
        return UNet(spec.event_shape[0], unet, num_labels=num_labels)
    if len(spec.event_shape) == 1:
        return MLP(spec.event_shape[0], mlp, num_labels=num_labels)
    raise ValueError(f"{family} supports images (C, H, W) or vectors (D,), got event shape {spec.event_shape}")
