"""GAN and VAE tasks: losses, steps and optimizers. The networks stay plain modules (optik.generative.nets)."""
from __future__ import annotations

import copy
import math
from typing import Sequence

import lightning as L
import torch

from optik.core import seed as random
from optik.core.images import to_float
from optik.core.seed import generator
from optik.generative.diffaug import diff_augment
from optik.generative.losses import discriminator_loss, generator_loss, negative_elbo, r1_penalty
from optik.generative.models import GANModel, GenerativeModel, VAEModel
from optik.generative.nets import VAE, Discriminator, Generator
from optik.training.config import GANConfig, VAEConfig
from optik.training.ema import EMA, ema_beta
from optik.training.guard import LossGuard


def adam(params, **kw) -> torch.optim.Adam:
    """Adam with PyTorch's fused kernel where it has one (CPU and CUDA). On 2 CPU cores the default per-tensor
    loop took about 9 ms of a 50 ms VAE step at batch 64; the fused kernel takes 2.5 ms. Same update rule."""
    params = list(params)
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, fused=True if fused else None, **kw)


class _GenerativeTask(L.LightningModule):
    """Shared by both tasks: seeded per-epoch noise, sparse loss logging, and the model to save."""

    def __init__(self, cfg, *, channels: int, image_size: Sequence[int], classes: Sequence[str]):
        super().__init__()
        self.cfg, self.classes = cfg, list(classes)
        self.common = {"latent_dim": cfg.latent_dim, "channels": channels,
                       "image_size": [int(s) for s in image_size], "classes": self.classes}
        self._noise: torch.Generator | None = None
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.long))  # all ranks, in checkpoints
        self.register_buffer("batches_done", torch.zeros((), dtype=torch.long))
        self._sums: dict[str, torch.Tensor] = {}
        self._count = self._steps = 0
        self.guard = LossGuard()

    def setup(self, stage: str) -> None:
        # Channels-last weights, as classification trains (optik.training.trainer.fit): oneDNN's convolutions
        # run faster on them, a VAE step at batch 64 on 2 CPU cores about 10 % (benchmarks/README.md). Same
        # values; saved weights are made contiguous (optik.models.io.save_model). setup() runs before the
        # optimizers are built and a checkpoint restored, so their states take the same layout.
        self.to(memory_format=torch.channels_last)

    def on_train_epoch_start(self) -> None:
        # Every random draw of an epoch comes from (seed, epoch, rank): a resumed run continues identically.
        self._noise = generator(self.cfg.seed, "noise", self.current_epoch, self.global_rank)
        self.trainer.datamodule.set_epoch(self.current_epoch)
        self.guard.start(int(self.batches_done), self.device)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Batches travel as ``uint8``; pixels become float in [0, 1] here, on the device."""
        x, y = batch
        return to_float(x), y

    def randn(self, *shape: int) -> torch.Tensor:
        return random.normal(shape, generator=self._noise, device=self.device)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.batches_done += 1
        if batch_idx + 1 == self.trainer.num_training_batches:  # before the epoch's checkpoint is written
            self.guard.check(lr=self.cfg.lr)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.cfg.schedule == "cosine":  # lr = base * (1 + cos(pi * progress)) / 2, down to 0 at the end
            factor = 0.5 * (1 + math.cos(math.pi * min(1.0, self.progress())))
            opts = self.optimizers()
            for opt in opts if isinstance(opts, list) else [opts]:
                for group in opt.param_groups:
                    group["lr"] = group.setdefault("base_lr", group["lr"]) * factor

    def progress(self) -> float:
        """The share of training done: time elapsed over ``max_minutes`` under a wall-clock budget (so a cosine
        schedule ends with the budget; not bit-reproducible), else batches over all planned batches."""
        if self.cfg.max_minutes:
            from lightning.pytorch.callbacks import Timer

            timer = next(c for c in self.trainer.callbacks if isinstance(c, Timer))
            return timer.time_elapsed("train") / (60 * self.cfg.max_minutes)
        return int(self.batches_done) / max(1, self.trainer.max_epochs * self.trainer.num_training_batches)

    def _log_sparse(self, **values: torch.Tensor) -> None:
        """Log the means over the last ``log_every_n_steps`` steps (``self.log`` costs ~2 ms a call on CPU)."""
        self.guard.observe(*values.values())
        for k, v in values.items():
            self._sums[k] = v.detach() + (self._sums[k] if self._count else 0)
        self._count += 1
        self._steps += 1  # batches, not optimizer steps (a GAN batch takes two)
        if self._steps % max(1, self.trainer.log_every_n_steps) == 0:
            self.guard.check(lr=self.cfg.lr)  # logging synchronizes anyway
            self.log_dict({f"train/{k}": v / self._count for k, v in self._sums.items()}, prog_bar=True)
            self._count = 0

    def generative_model(self) -> GenerativeModel:
        """A standalone copy of the model to sample from and to save (CPU-independent, eval mode)."""
        raise NotImplementedError


class GANTask(_GenerativeTask):
    """Alternating discriminator / generator Adam steps (one each per batch), with the options of
    :class:`optik.training.config.GANConfig`: loss, R1, DiffAugment, two learning rates, and a weight average."""

    def __init__(self, cfg: GANConfig, *, channels: int, image_size: Sequence[int], classes: Sequence[str]):
        super().__init__(cfg, channels=channels, image_size=image_size, classes=classes)
        self.automatic_optimization = False
        k = len(self.classes) if cfg.conditional else 0
        self.g_arch = {"latent_dim": cfg.latent_dim, "channels": channels, "image_size": self.common["image_size"],
                       "width": cfg.width, "num_classes": k}
        self.G = Generator(**self.g_arch)
        self.D = Discriminator(channels=channels, image_size=image_size, width=cfg.d_width or cfg.width,
                               norm=cfg.d_norm, num_classes=k)
        self.ema = EMA(self.G) if cfg.ema_half_life else None
        self._seen: int | None = None  # images_seen as a Python int (see training_step)
        self.ops = [o.strip() for o in cfg.diffaugment.split(",") if o.strip()]

    def _d(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if self.ops:
            x = diff_augment(x, self.ops, generator=self._noise)
        return self.D(x, y)

    def training_step(self, batch, batch_idx: int) -> None:
        cfg = self.cfg
        x, y = batch
        n = len(x)
        opt_g, opt_d = self.optimizers()
        y = y if cfg.conditional else None
        y_fake = (random.randint(len(self.classes), (n,), generator=self._noise, device=self.device)
                  if cfg.conditional else None)
        fake = self.G(self.randn(n, cfg.latent_dim), y_fake)

        # Discriminator: real vs (detached) fake, plus R1 on the real images.
        self.D.requires_grad_(True)
        real = x.detach().requires_grad_(cfg.r1_gamma > 0)
        real_logits = self._d(real, y)
        d_loss = discriminator_loss(cfg.loss, real_logits, self._d(fake.detach(), y_fake))
        logs = {"d_loss": d_loss}
        if cfg.r1_gamma:
            r1 = r1_penalty(real_logits, real)
            d_loss = d_loss + cfg.r1_gamma / 2 * r1
            logs["r1"] = r1
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        opt_d.step()

        # Generator: through a frozen discriminator (no weight gradients computed for it).
        self.D.requires_grad_(False)
        g_loss = generator_loss(cfg.loss, self._d(fake, y_fake))
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        opt_g.step()

        self.images_seen += n * self.trainer.world_size
        if self.ema is not None:
            if self._seen is None:  # read the buffer once (it comes back from a checkpoint on resume), then count
                self._seen = int(self.images_seen)  # in Python: int() of a GPU tensor every step would sync
            else:
                self._seen += n * self.trainer.world_size
            self.ema.update(self.G, ema_beta(batch_size=n * self.trainer.world_size,
                                             half_life_images=cfg.ema_half_life,
                                             images_seen=self._seen, rampup=cfg.ema_rampup))
        self._log_sparse(g_loss=g_loss, **logs)

    def configure_optimizers(self):
        cfg = self.cfg
        betas = (cfg.beta1, cfg.beta2)
        return [adam(self.G.parameters(), lr=cfg.lr, betas=betas),
                adam(self.D.parameters(), lr=cfg.d_lr or cfg.lr, betas=betas)]

    def generative_model(self) -> GANModel:
        source = self.ema.average if self.ema is not None else self.G
        g = copy.deepcopy(source).eval()
        return GANModel(g, arch=self.g_arch, **self.common)


class VAETask(_GenerativeTask):
    """Minimizes ``reconstruction NLL + beta * w(step) * KL`` with one reparameterized sample per image;
    validation reports the per-image ``-ELBO = NLL + KL`` in nats (beta = 1, no warm-up)."""

    def __init__(self, cfg: VAEConfig, *, channels: int, image_size: Sequence[int], classes: Sequence[str]):
        super().__init__(cfg, channels=channels, image_size=image_size, classes=classes)
        self.arch = {"latent_dim": cfg.latent_dim, "channels": channels, "image_size": self.common["image_size"],
                     "width": cfg.width, "hidden": cfg.hidden, "prior_components": cfg.prior_components}
        self.vae = VAE(**self.arch)
        learn = cfg.likelihood == "gaussian" and cfg.sigma is None
        self.log_sigma = torch.nn.Parameter(torch.tensor(math.log(cfg.sigma or 0.1)), requires_grad=learn)
        self._val: list[torch.Tensor] = []
        # The step calls backward and Adam itself, as GANTask does: it skips Lightning's automatic-optimization
        # closure (Lightning's per-step bookkeeping is about 3 % of a 45 ms CPU step; benchmarks/README.md).
        self.automatic_optimization = False

    def _elbo_terms(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.vae.encode(x)
        z = mu + noise * (0.5 * logvar).exp()  # reparameterization: gradients flow to mu and logvar
        return negative_elbo(self.cfg.likelihood, self.vae.decode(z), x, mu, logvar, log_sigma=self.log_sigma,
                             prior=self.vae.prior, noise=noise)

    def kl_weight(self) -> float:
        warm = self.cfg.kl_warmup
        return self.cfg.beta * (min(1.0, (int(self.batches_done) + 1) / warm) if warm else 1.0)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """The training batch as the step sees it: shifted at random by up to ``shift_pixels`` (zero fill) while
        the share of training done is under ``shift_until``, as it is after that."""
        if self.cfg.shift_pixels and self.progress() < self.cfg.shift_until:
            from optik.generative.diffaug import translate

            u = random.uniform((len(x), 2), generator=self._noise, device=self.device)
            x = translate(x, u, pixels=self.cfg.shift_pixels)
        return x

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = self.augment(batch[0])
        nll, kl = self._elbo_terms(x, self.randn(len(x), self.cfg.latent_dim))
        loss = (nll + self.kl_weight() * kl).mean()
        opt = self.optimizers()
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt.step()
        self.images_seen += len(x) * self.trainer.world_size
        self._log_sparse(loss=loss, neg_elbo=(nll + kl).mean())
        return loss.detach()

    def _validating(self) -> bool:
        """Validate every ``val_every`` epochs and at the last one (also one cut short by a time budget)."""
        from optik.training.callbacks import epoch_due

        return epoch_due(self.trainer, self.cfg.val_every)

    def validation_step(self, batch, batch_idx: int) -> None:
        if not self._validating():  # Lightning still walks the batches: about 2 ms an epoch
            return
        x, _ = batch
        g = generator(self.cfg.seed, "val-noise", batch_idx)  # the same noise every epoch: comparable values
        noise = random.normal((len(x), self.cfg.latent_dim), generator=g, device=self.device)
        nll, kl = self._elbo_terms(x, noise)
        self._val.append(torch.stack([nll.sum(), kl.sum(), torch.tensor(float(len(x)), device=self.device)]))

    def on_validation_epoch_end(self) -> None:
        if not self._val:  # not a validation epoch (the same decision on every rank)
            return
        total = self.all_gather(torch.stack(self._val).sum(0)).reshape(-1, 3).sum(0)  # sums over every rank
        self._val.clear()
        nll, kl = (total[:2] / total[2]).tolist()
        self.log_dict({"val/neg_elbo": nll + kl, "val/nll": nll, "val/kl": kl}, prog_bar=True, sync_dist=False)

    def configure_optimizers(self):
        cfg = self.cfg
        return adam(list(self.vae.parameters()) + [self.log_sigma], lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))

    def generative_model(self) -> VAEModel:
        return VAEModel(copy.deepcopy(self.vae).eval(), arch=self.arch, **self.common)
