"""The classification task: loss, steps, optimizer and schedule. The model itself stays a plain nn.Module."""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.classification import MulticlassConfusionMatrix

from optik.augment.generator import augment
from optik.core.images import to_float
from optik.core.seed import derive_seed, generator
from optik.evaluation.metrics import MAX_MATRIX_CLASSES, metrics_from_confusion, metrics_from_counts
from optik.models.classifier import Classifier
from optik.models.transfer import parameter_groups, set_trainable, trainable_stages_at
from optik.training.config import TrainConfig
from optik.training.ema import EMA, ema_beta
from optik.training.guard import LossGuard


class ClassCounts(Metric):
    """Per class: images, predictions and correct predictions, summed over ranks. The validation report of a task
    with more classes than a ``K x K`` confusion matrix is kept for (``MAX_MATRIX_CLASSES``)."""

    def __init__(self, num_classes: int):
        super().__init__()
        for name in ("true", "pred", "tp"):
            self.add_state(name, default=torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        k = len(self.true)
        self.true += torch.bincount(target, minlength=k)
        self.pred += torch.bincount(pred, minlength=k)
        self.tp += torch.bincount(target[pred == target], minlength=k)

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.true.sum()
        fn, fp = self.true - self.tp, self.pred - self.tp
        return {"tp": self.tp, "fp": fp, "fn": fn, "tn": n - self.tp - fp - fn}


class ClassificationTask(L.LightningModule):
    """Cross-entropy training of a :class:`Classifier` with seeded, resumable randomness.

    Every epoch reseeds dropout and augmentation from ``(seed, epoch, rank)``, so a run resumed from the
    checkpoint of epoch ``e`` continues exactly as the uninterrupted run would have.

    With ``cfg.ema_half_life`` the task also keeps ``ema.average``, an exponential moving average of the model's
    weights (BatchNorm statistics copied from the model); validation measures the average, and it is what
    :func:`~optik.training.trainer.fit` returns.
    """

    def __init__(self, model: Classifier, cfg: TrainConfig, *, steps_per_epoch: int):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.steps_per_epoch = steps_per_epoch
        k = model.num_classes
        self.val_confusion = MulticlassConfusionMatrix(k) if k <= MAX_MATRIX_CLASSES else ClassCounts(k)
        self.val_metrics: dict | None = None  # the last validation report (reduced over all ranks)
        self._aug_generator: torch.Generator | None = None
        self._resumed_rng: dict | None = None  # the random state a mid-epoch checkpoint recorded
        self._loss_sum, self._loss_count = torch.zeros(()), 0
        self.augmentation = cfg.augmentation()
        self._frozen_norms: list[torch.nn.Module] = []
        self.ema = EMA(model) if cfg.ema_half_life else None  # in the checkpoint: resuming restores it
        self._stages: int | None | str = "unset"
        self.guard = LossGuard()
        self._set_trainable(0)  # before data parallel wraps the model: it registers the trainable parameters

    def _set_trainable(self, epoch: int) -> None:
        """Freeze / unfreeze for this epoch (a pure function of the epoch, so resuming restores it)."""
        stages = trainable_stages_at(epoch, freeze=self.cfg.freeze, unfreeze_at=self.cfg.unfreeze_at,
                                     trainable_stages=self.cfg.trainable_stages)
        if stages != self._stages:
            self._frozen_norms = set_trainable(self.model, stages)
            self._stages = stages
            frozen = set(self._frozen_norms)
            for m in self.model.modules():  # unfrozen BatchNorm layers learn their statistics again
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m not in frozen:
                    m.train(self.model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Batches travel as ``uint8`` (4x fewer bytes); pixels become float in [0, 1] here, on the device."""
        x, y = batch
        return to_float(x), y

    @property
    def evaluated(self) -> Classifier:
        """The weights validation measures and training returns: the average when there is one."""
        return self.ema.average if self.ema is not None else self.model

    def on_train_epoch_start(self) -> None:
        epoch, rank = self.current_epoch, self.global_rank
        self._set_trainable(epoch)
        torch.manual_seed(derive_seed(self.cfg.seed, "dropout", epoch, rank))
        self._aug_generator = generator(self.cfg.seed, "augment", epoch, rank)
        self.trainer.datamodule.set_epoch(epoch)
        self.guard.start(self.global_step, self.device)

    # ------------------------------------------------------------------ resuming mid-epoch
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The random state of the epoch so far (augmentation, dropout): a run resumed from a checkpoint written
        mid-epoch (``checkpoint_every``) draws what the uninterrupted run would have drawn next."""
        checkpoint["optik_rng"] = {
            "epoch": self.current_epoch,
            "augment": self._aug_generator.get_state() if self._aug_generator is not None else None,
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resumed_rng = checkpoint.get("optik_rng")

    def on_train_start(self) -> None:
        state = self._resumed_rng
        if state is None or not self.trainer.fit_loop.restarted_mid_epoch:
            return  # a fresh epoch reseeds itself in on_train_epoch_start
        epoch = self.current_epoch  # Lightning calls no on_train_epoch_start for the epoch it resumes inside
        self._set_trainable(epoch)
        self._aug_generator = generator(self.cfg.seed, "augment", epoch, self.global_rank)
        if state["augment"] is not None:
            self._aug_generator.set_state(state["augment"])
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        self.guard.start(self.global_step, self.device)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        for m in self._frozen_norms:  # Lightning switches everything to train mode each epoch; not these
            m.eval()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.trainer.datamodule.train_batches.consumed = batch_idx + 1  # where a mid-epoch checkpoint resumes
        if batch_idx + 1 == self.trainer.num_training_batches:  # before the epoch's checkpoint is written
            self.guard.check(lr=self.cfg.lr)
        if self.ema is not None:  # images seen follow from the step count (full batches), so resuming agrees
            n = len(batch[1]) * self.trainer.world_size
            self.ema.update(self.model, ema_beta(batch_size=n, half_life_images=self.cfg.ema_half_life,
                                                 images_seen=self.global_step * n, rampup=self.cfg.ema_rampup))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.augmentation is not None:  # training batches only; back into [0, 1] after brightness
            x = augment(x, self.augmentation, generator=self._aug_generator)[0].clamp_(0, 1)
        x = x.contiguous(memory_format=torch.channels_last)
        if self.cfg.adversarial:
            loss = self._adversarial_loss(x, y)
        else:
            loss = F.cross_entropy(self.model(x), y, label_smoothing=self.cfg.label_smoothing)
        self.guard.observe(loss)
        self._log_train_loss(loss)
        return loss

    # ------------------------------------------------------------------ adversarial training
    def current_eps(self) -> float:
        """eps of this step: grows linearly over the first ``eps_ramp`` epochs, then stays at ``eps``."""
        ramp = self.cfg.eps_ramp * self.steps_per_epoch
        if not ramp:
            return self.cfg.eps
        return self.cfg.eps * min(1.0, (self.global_step + 1) / ramp)

    def _adversarial_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Madry's PGD / Wong's FGSM with random start: cross-entropy on the worst case in the ball. TRADES:
        cross-entropy on clean images plus beta * KL(clean || adversarial), the adversary maximizing that KL.

        The adversary runs in eval mode (every module's own mode comes back after it, frozen BatchNorm included)
        and draws its random start from the epoch's generator, wherever the batch lives. TRADES' adversary is the
        authors' (:class:`~optik.robustness.attacks.TradesKL`). Its loss takes the clean and adversarial logits
        from one forward pass over both batches by default (``trades_batchnorm="joint"``: BatchNorm normalizes them
        with one set of batch statistics); ``"separate"`` runs two passes, as the authors' ``trades.py`` does. On
        mnist5k (15 epochs, eps 0.3) joint held 78.5 % under APGD-CE against 64.5 % for separate passes, at equal
        clean accuracy (benchmarks/README.md).
        """
        from optik.robustness.attacks import PGD, TradesKL

        cfg, eps = self.cfg, self.current_eps()
        if cfg.adversarial == "trades":
            adversary = TradesKL(self.model, eps=eps, steps=cfg.attack_steps, alpha=cfg.attack_step_size,
                                 batch_size=len(x))
            x_adv = adversary.generate(x, y, generator=self._aug_generator)
            if cfg.trades_batchnorm == "joint":
                clean, adv = self.model(torch.cat([x, x_adv])).split(len(x))
            else:
                clean, adv = self.model(x), self.model(x_adv)
            kl = F.kl_div(F.log_softmax(adv, 1), F.softmax(clean, 1), reduction="batchmean")
            return F.cross_entropy(clean, y, label_smoothing=cfg.label_smoothing) + cfg.trades_beta * kl
        if cfg.adversarial == "fgsm-rs":
            attack = PGD(self.model, eps=eps, steps=1, alpha=cfg.attack_step_size or 1.25 * eps, batch_size=len(x))
        else:
            attack = PGD(self.model, eps=eps, steps=cfg.attack_steps, alpha=cfg.attack_step_size, batch_size=len(x))
        x_adv = attack.generate(x, y, generator=self._aug_generator)  # in eval mode; train mode comes back
        return F.cross_entropy(self.model(x_adv), y, label_smoothing=cfg.label_smoothing)

    def _log_train_loss(self, loss: torch.Tensor) -> None:
        """Log the mean loss of the last ``log_every_n_steps`` steps, on the steps Lightning writes logs.

        ``self.log`` costs about 2 ms a call on CPU; calling it on every step was 3 % of a small model's training.
        """
        self._loss_sum = loss.detach() + (self._loss_sum if self._loss_count else 0)
        self._loss_count += 1
        every = max(1, self.trainer.log_every_n_steps)
        if (self.global_step + 1) % every == 0:
            self.guard.check(lr=self.cfg.lr)  # logging synchronizes anyway
            self.log("train/loss", self._loss_sum / self._loss_count, prog_bar=True)
            self._loss_count = 0

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        net = self.evaluated
        logits = net(x.contiguous(memory_format=torch.channels_last))
        self.val_confusion.update(logits.argmax(dim=1), y)
        self.log("val/loss", F.cross_entropy(logits, y), sync_dist=True, batch_size=len(y))
        if self.cfg.adversarial:  # robust accuracy under PGD at the full eps, the training attack's steps
            from optik.robustness.attacks import PGD

            attack = PGD(net, eps=self.cfg.eps, steps=max(self.cfg.attack_steps, 10), batch_size=len(x))
            with torch.no_grad():
                robust = (net(attack.generate(x, y)).argmax(1) == y).float().mean()
            self.log("val/robust_acc", robust, prog_bar=True, sync_dist=True, batch_size=len(y))

    def on_validation_epoch_end(self) -> None:
        cm = self.val_confusion.compute()  # summed over all ranks by torchmetrics
        self.val_confusion.reset()
        self.val_metrics = (metrics_from_confusion(cm.cpu().numpy(), self.model.classes)
                            if isinstance(cm, torch.Tensor) else
                            metrics_from_counts({k: v.cpu().numpy() for k, v in cm.items()}, self.model.classes))
        # identical on every rank already; sync_dist only tells Lightning so
        self.log("val/acc", self.val_metrics["accuracy"], prog_bar=True, sync_dist=True)
        self.log("val/balanced_acc", self.val_metrics["balanced_accuracy"], sync_dist=True)
        self.log("val/macro_f1", self.val_metrics["macro"]["f1"], sync_dist=True)

    def configure_optimizers(self):
        cfg = self.cfg
        groups = parameter_groups(self.model, lr=cfg.lr, backbone_lr_scale=cfg.backbone_lr_scale,
                                  weight_decay=cfg.weight_decay)
        if cfg.optimizer == "sgd":
            opt = torch.optim.SGD(groups, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
        else:
            opt = torch.optim.AdamW(groups, betas=(cfg.momentum, 0.999))
        total = cfg.epochs * self.steps_per_epoch
        if cfg.schedule == "onecycle" and total >= 4:
            # OneCycle divides by the length of each phase: each needs more than one step (tiny datasets)
            pct = min(max(cfg.warmup_fraction, 1.5 / total), 1 - 1.5 / total)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=total,
                                                        pct_start=pct,
                                                        cycle_momentum=cfg.optimizer == "sgd")
        elif cfg.schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
