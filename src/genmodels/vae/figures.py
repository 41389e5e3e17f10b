"""The pictures that explain a VAE or a hierarchical VAE: samples, reconstructions, latent interpolations and the
latent space by label. :meth:`VAE.figures` / :meth:`HVAE.figures` call :func:`write_figures`; the loss curve is the
caller's.

Imported lazily (by the models' ``figures()``), never at ``import genmodels`` time: the pictures need matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["write_figures"]

N_PAIRS = 8
"""Test images per half of the reconstruction grid, and pairs of the interpolation picture."""


def write_figures(model, data, out: Path, generator: torch.Generator) -> list[Path]:
    """A VAE's pictures in the folder ``out``.

    Images:

    - ``samples_mean.png``: 64 samples shown as the decoder's mean E[x | z], z ~ p(z) (as VAE papers show them);
    - ``samples.png``: 64 samples x ~ p(x | z);
    - ``reconstructions.png``: 16 test images (a fixed random pick) over their reconstructions, one row each;
    - ``interpolation.png``: 8 rows, each a test image, 10 decoder means along the straight line between the two
      images' posterior means of z_1, E_q[z_1 | x], and the other test image.

    2-D data: ``samples.png``, 2000 samples x ~ p(x | z).

    Every model, for each latent layer with 2 dimensions: ``latent.png`` (one layer) or ``latent_zK.png`` (layer K),
    the posterior means E_q[z_K | x] of up to 5000 test examples, coloured by label where the data has labels.

    Args:
        model: a trained VAE or HVAE in eval mode (``sample``, ``reconstruct``, ``latent_means``, ``decode``).
        data: the :class:`~genmodels.data.Dataset` it was trained on (its ``test`` split and ``test_labels``).
        out: the figures folder (RUN/figures); created.
        generator: draws the samples, then the pick of test images.
    Returns:
        the written paths, in the order above.
    """
    from ..viz import save_grid, save_latent_scatter
    from .likelihoods import decoder_mean

    out = Path(out)
    written: list[Path] = []
    spec, n, g = model.spec, N_PAIRS, generator
    if spec.is_image:
        scale = max(1, 32 // spec.event_shape[-1])
        written.append(save_grid(model.sample(64, g, mean=True), out / "samples_mean.png", scale=scale))
        written.append(save_grid(model.sample(64, g), out / "samples.png", scale=scale))
        x = data.test[torch.randperm(len(data.test), generator=g)[:2 * n]]  # a fixed random pick of test images
        written.append(save_grid(torch.cat([x, model.reconstruct(x)]), out / "reconstructions.png", nrow=2 * n,
                                 scale=scale))
        with torch.no_grad():
            za, zb = model.latent_means(x[:n])[0], model.latent_means(x[n:2 * n])[0]
            w = torch.linspace(0, 1, 10)[:, None, None]  # [10, 1, 1]
            zs = ((1 - w) * za + w * zb).transpose(0, 1).flatten(0, 1)  # [n·10, d_1], row by row
            mid = decoder_mean(model.decode(zs), model.likelihood).view(n, 10, *spec.event_shape)
        rows = torch.cat([x[:n, None], mid, x[n:2 * n, None]], 1).flatten(0, 1)
        written.append(save_grid(rows, out / "interpolation.png", nrow=12, scale=scale))
    else:
        written.append(save_grid(model.sample(2000, g), out / "samples.png"))
    with torch.no_grad():
        per_batch = [model.latent_means(xb) for xb in data.test[:5000].split(500)]  # [batch][layer] -> [B, d_l]
        means = [torch.cat(m) for m in zip(*per_batch, strict=True)]
    for i, m in enumerate(means):
        if m.shape[1] == 2:
            name = "latent.png" if len(means) == 1 else f"latent_z{i + 1}.png"
            labels = data.test_labels[:len(m)] if data.test_labels is not None else None
            written.append(save_latent_scatter(m, out / name, labels, title=f"E_q[z{'' if len(means) == 1 else i + 1}"
                                                                            f" | x], {len(m)} test examples"))
    return written
