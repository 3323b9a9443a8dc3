"""Figures of generative models: sample grids, latent interpolations, VAE reconstructions."""
from __future__ import annotations

import torch

from optik.core.seed import generator
from optik.evaluation.figures import plt
from optik.generative.latent import lerp, slerp


def _tile(x: torch.Tensor, nrow: int) -> torch.Tensor:
    from torchvision.utils import make_grid

    return make_grid(x.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=1, pad_value=1.0).permute(1, 2, 0)


def _show(ax, grid: torch.Tensor) -> None:
    ax.imshow(grid.numpy() if grid.shape[2] == 3 else grid[..., 0].numpy(), cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.axis("off")


def image_grid_figure(x: torch.Tensor, *, title: str = "", nrow: int | None = None):
    """Images ``N x C x H x W`` in [0, 1] as one grid (``nrow`` per row, default about square)."""
    nrow = nrow or max(1, int(round(len(x) ** 0.5)))
    rows = -(-len(x) // nrow)
    fig, ax = plt.subplots(figsize=(0.5 * nrow + 0.4, 0.5 * rows + 0.6), constrained_layout=True)
    _show(ax, _tile(x, nrow))
    ax.set_title(title)
    return fig


def interpolation_figure(model, *, seed: int, method: str = "slerp", rows: int = 8, steps: int = 10,
                         real: torch.Tensor | None = None):
    """``rows`` latent paths of ``steps`` images each. With ``real`` (``2 * rows`` images, VAE only) each path
    joins the encodings of two real images, which are shown at both ends."""
    paths = {"lerp": lerp, "slerp": slerp}
    if method not in paths:
        from optik.core.errors import ConfigError

        raise ConfigError(f"expected --method lerp or slerp, got {method!r}")
    if real is not None:
        z = model.encode(real)
        a, b = z[0::2][:rows], z[1::2][:rows]
        rows = len(a)
    else:
        z = model.latents(2 * rows, generator=generator(seed, "interpolate"))
        a, b = z[:rows], z[rows:]
    codes = paths[method](a, b, torch.linspace(0, 1, steps)).reshape(rows * steps, -1)
    y = model.labels(rows * steps, torch.arange(rows).repeat_interleave(steps) % max(1, len(model.classes))) \
        if model.conditional else None
    with torch.no_grad():
        x = model.eval().generate(codes.to(model.device), y).cpu()
    if real is not None:  # original | path | original
        x = x.view(rows, steps, *x.shape[1:])
        x = torch.cat([real[0::2][:rows].unsqueeze(1), x, real[1::2][:rows].unsqueeze(1)], 1).flatten(0, 1)
        steps += 2
    fig, ax = plt.subplots(figsize=(0.5 * steps + 0.4, 0.5 * rows + 0.6), constrained_layout=True)
    _show(ax, _tile(x, steps))
    ax.set_title(f"{method} in latent space" + (" between encoded test images (ends: originals)"
                                                if real is not None else ""))
    return fig


def reconstruction_figure(x: torch.Tensor, recon: torch.Tensor):
    """Originals (top row) over their reconstructions (bottom row)."""
    n = len(x)
    fig, ax = plt.subplots(figsize=(0.5 * n + 0.4, 1.6), constrained_layout=True)
    _show(ax, _tile(torch.cat([x.cpu(), recon.cpu()]), n))
    ax.set_title("test images (top) and their VAE reconstructions (bottom)")
    return fig
