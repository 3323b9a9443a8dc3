"""The functions a notebook user calls; the CLI is a thin layer over these."""
from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from optik.core.config import data_options, resolve_config
from optik.core.errors import ConfigError, DataError, OptikWarning, RunError
from optik.core.images import to_float
from optik.core.io import (RunLock, input_paths, new_run_dir, provenance, read_json, resume_checkpoint,
                           write_json, write_yaml)
from optik.core.modes import eval_mode
from optik.core.seed import seed_everything
from optik.data.folder import IMAGE_EXTENSIONS, SkippedImagesWarning, decode_image
from optik.data.handles import DataHandle, Split, channel_stats, write_splits
from optik.data.registry import open_data
from optik.evaluation.evaluate import predict_proba
from optik.evaluation.figures import confusion_figure, save_figure
from optik.models.classifier import Classifier
from optik.models.inputs import conform, fit_images
from optik.models.io import load_classifier, save_classifier
from optik.models.registry import create_classifier, resolve_arch
from optik.runs import Run
from optik.training.config import TrainConfig

log = logging.getLogger("optik")
RUN_DIR_ENV = "OPTIK_RUN_DIR"  # lets data-parallel worker processes find the folder rank 0 created
# options that change how a run computes, not what: a resumed run may set them anew
RESUMABLE_OVERRIDES = {"devices", "accelerator", "strategy", "num_nodes", "precision", "stream", "max_memory_gb",
                       "workers", "checkpoint_every"}


@dataclass
class TrainResult:
    run_dir: Path
    model: Classifier | None  # None on data-parallel ranks other than 0
    metrics: dict | None      # test-split report, as in metrics.json


# ------------------------------------------------------------------------------------------------ config
def make_config(config: str | os.PathLike | dict | TrainConfig | None = None, **overrides: Any) -> TrainConfig:
    """A TrainConfig from a YAML file, a dict or a TrainConfig, with keyword overrides on top."""
    return resolve_config(TrainConfig, config, **overrides)


def _is_worker_process() -> bool:
    """True in a data-parallel process other than global rank 0 (Lightning, torchrun or SLURM launched)."""
    return any(int(os.environ.get(k, "0") or 0) > 0 for k in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID"))


def _launched_by_others() -> str | None:
    """The launcher, when this process is one of several started by ``torchrun`` or ``srun``: each starts
    training on its own, so the run folder must be named (``--out``) before any of them begins."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and "TORCHELASTIC_RUN_ID" in os.environ:
        return "torchrun"
    if int(os.environ.get("SLURM_STEP_NUM_TASKS", "1") or 1) > 1:
        return "srun"
    return None


@contextmanager
def _run_dir_for_workers(run: Path):
    """Name the run folder to the processes Lightning starts for data-parallel training, for this fit only."""
    before = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = before


# ------------------------------------------------------------------------------------------------ data
def open_run_data(cfg: TrainConfig, **overrides: Any) -> DataHandle:
    """The data a training config names, as split handles (in memory, or streamed from files)."""
    return open_data(**{**data_options(cfg), **overrides})


def prepare(data: str | os.PathLike, *, out: str | os.PathLike, image_size: int, val_fraction: float = 0.1,
            test_fraction: float = 0.2, split_seed: int = 0, workers: int | None = None, progress: bool = True,
            group_column: str | None = None, dicom_window: str | Sequence[float] | None = None) -> Path:
    """Write a folder or manifest as LitData shards of resized images (see :mod:`optik.data.prepare`): split and
    decoded once, then ``optik.train(data=out)`` streams them, from this folder or from a copy in an object store.
    ``group_column`` keeps each group (patient) in one split; ``dicom_window`` (``"C,W"`` or two numbers) overrides
    DICOM windows. Resumes if interrupted. Returns the folder."""
    from optik.data.prepare import prepare as write_shards

    window = data_options(resolve_config(TrainConfig, {}, dicom_window=dicom_window))["dicom_window"]
    return write_shards(str(data), out, image_size=image_size, val_fraction=val_fraction,
                        test_fraction=test_fraction, split_seed=split_seed, workers=workers, progress=progress,
                        group_column=group_column, dicom_window=window)


# ------------------------------------------------------------------------------------------------ train
def train(config: str | os.PathLike | dict | TrainConfig | None = None, *, out: str | os.PathLike | None = None,
          overwrite: bool = False, resume: str | os.PathLike | None = None, resume_from: str = "last",
          progress: bool = True, **overrides: Any) -> TrainResult:
    """Train a classifier and write its run folder; see :class:`optik.training.config.TrainConfig` for options.

    Args:
        config: a YAML path, dict or TrainConfig; keyword ``overrides`` (e.g. ``epochs=5``) go on top.
        out: the run folder; default a new ``runs/train-<data>-<time>``.
        overwrite: replace an existing, non-empty ``out`` (only a run folder optik made, which no process is
            training into and which does not contain the data).
        resume: a run folder whose training was interrupted: continue from its last checkpoint with its
            saved config (only hardware options may be overridden).
        resume_from: ``last`` (the last completed epoch) or ``best`` (the best validation epoch's checkpoint).
        progress: show the Rich progress bar.

    The run folder is locked while training (``.optik.lock``): a second training into it fails at once.

    Returns:
        TrainResult with the run folder, the trained model (last epoch, or best validation epoch with
        ``keep="best"``) and its test-split metrics.
    """
    # Over 60 lines (a quarter of them the docstring): new runs, resumed runs and data-parallel workers share one path,
    # ordered so that a typo in the config, the data or the model fails before any run folder is made.
    worker = _is_worker_process()
    if resume is not None:
        run, cfg, checkpoint = _resumed_config(resume, resume_from, overrides)
    else:
        run, cfg, checkpoint = None, _new_config(config, overrides, quiet=worker), None
    seed_everything(cfg.seed)
    # Data and model first: a typo in either fails before any folder is made.
    data = open_run_data(cfg)
    if data.meta.get("outside_manifest_folder") and not worker:
        log.info("%d of the manifest's images lie outside its folder (recorded in config.yaml and the report)",
                 data.meta["outside_manifest_folder"])
    model = _new_model(cfg, data, fresh=resume is None)
    if resume is None:
        run, lock = _new_run_folder(cfg, data, out, overwrite=overwrite, worker=worker)
    else:
        lock = None if worker else RunLock(run).acquire()
    try:
        return _fit_and_report(model, cfg, data, run, checkpoint=checkpoint, worker=worker,
                               progress=progress and not worker)
    finally:
        if lock is not None:
            lock.release()


def _resumed_config(resume: str | os.PathLike, resume_from: str, overrides: dict) -> tuple[Path, TrainConfig, Path]:
    """``(run folder, config, checkpoint)`` of an interrupted run; a ConfigError when ``overrides`` change more
    than how it computes."""
    opened = Run.open(resume, kind="classifier", finished=False)
    run, saved = opened.path, opened.saved
    checkpoint = resume_checkpoint(run, resume_from)
    before = make_config(saved["config"]).to_dict()
    cfg = make_config(saved["config"], **overrides)  # flags arrive as strings: compare converted values
    changed = {k for k, v in cfg.to_dict().items() if before[k] != v}
    if changed - RESUMABLE_OVERRIDES:
        raise ConfigError(f"cannot change {sorted(changed - RESUMABLE_OVERRIDES)} when resuming {str(run)!r}; "
                          f"only {sorted(RESUMABLE_OVERRIDES)} may differ. Start a new run instead")
    return run, cfg, checkpoint


def _new_config(config, overrides: dict, *, quiet: bool) -> TrainConfig:
    """The config of a new run; says which adversarial-training defaults were filled in (unless ``quiet``)."""
    cfg = make_config(config, **overrides)
    if cfg.adversarial_defaults and not quiet:
        from optik.training.config import STANDARD_DEFAULTS

        log.info("adversarial training uses the measured recipe's defaults: %s (pass them to override)",
                 ", ".join(f"{k} {v} (not {STANDARD_DEFAULTS[k]})" for k, v in cfg.adversarial_defaults.items()))
    return cfg


def _new_model(cfg: TrainConfig, data: DataHandle, *, fresh: bool) -> Classifier:
    """The classifier ``cfg`` names, for ``data``; pretrained or local weights only for a ``fresh`` run (a resumed
    one loads its checkpoint)."""
    zoo = bool(resolve_arch(cfg.model, data.image_size).get("timm"))  # brings its own mean / std
    mean, std = (None, None) if zoo else channel_stats(data.splits["train"], seed=cfg.split_seed)
    model = create_classifier(cfg.model, classes=data.classes, in_channels=data.channels,
                              input_size=data.image_size, mean=mean, std=std, net_input_size=cfg.input_size,
                              pretrained=cfg.pretrained and fresh)
    if cfg.weights and fresh:
        from optik.models.transfer import load_backbone_weights

        loaded = load_backbone_weights(model, cfg.weights)
        log.info("weights from %s: %d tensors loaded, head re-initialized: %s", cfg.weights,
                 len(loaded["loaded"]), ", ".join(loaded["dropped"]) or "no")
    return model


def _new_run_folder(cfg: TrainConfig, data: DataHandle, out: str | os.PathLike | None, *, overwrite: bool,
                    worker: bool) -> tuple[Path, RunLock | None]:
    """``(run folder, its lock)`` of a new run: made, locked and given its config and splits by rank 0; the folder
    rank 0 made (or ``out``) on the other data-parallel ranks, unlocked."""
    launcher = _launched_by_others()
    if launcher and not (out or os.environ.get(RUN_DIR_ENV)):
        raise ConfigError(f"expected --out when launched by {launcher}: every process must train into the same "
                          "run folder, and a folder named after the time differs between them; got none")
    if worker:
        if not (out or os.environ.get(RUN_DIR_ENV)):
            raise RunError("data-parallel workers on other nodes need an explicit --out shared by all nodes")
        return Path(os.environ.get(RUN_DIR_ENV) or out), None
    prefix = f"train-{cfg.data if cfg.data.replace('-', '').isalnum() else Path(cfg.data).stem}"
    run = new_run_dir(out, prefix=prefix, overwrite=overwrite, protect=input_paths(cfg))
    lock = RunLock(run).acquire()
    write_yaml(run / "config.yaml", {"command": "train", **provenance(), "config": cfg.to_dict(),
                                     "data": data.summary()})
    write_splits(run / "splits.csv", data, group_column=cfg.group_column)
    return run, lock


def _fit_and_report(model: Classifier, cfg: TrainConfig, data: DataHandle, run: Path, *,
                    checkpoint: Path | None, worker: bool, progress: bool) -> TrainResult:
    from optik.training.datamodule import SplitDataModule  # Lightning loads in seconds: only when training
    from optik.training.trainer import fit

    if not worker:
        log.info("%s: %s; run folder %s", "resuming" if checkpoint else "training", data.describe(), run)
    datamodule = SplitDataModule(data.splits["train"], data.splits.get("val"), batch_size=cfg.batch_size,
                                 seed=cfg.seed, workers=cfg.workers)
    with _run_dir_for_workers(run):
        model, trainer = fit(model, datamodule, cfg, run, checkpoint=checkpoint, progress=progress)
    if not trainer.is_global_zero:
        return TrainResult(run, None, None)
    model = model.to(memory_format=torch.contiguous_format).eval()
    save_classifier(model, run)
    metrics = _evaluate_split(model, data, "test", run, device=trainer.strategy.root_device)  # where it trained
    data.warn_skipped()
    return TrainResult(run, model.cpu(), metrics)


# ------------------------------------------------------------------------------------------------ evaluate
def load(run: str | os.PathLike, *, device: str | torch.device = "cpu") -> Classifier:
    """The trained Classifier of a run folder (safetensors weights, rebuilt from ``model.json``)."""
    return load_classifier(run, map_location=available_device(device))


def available_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device, if this machine has it; otherwise a ConfigError that says what it has."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"expected a device such as cpu, cuda or cuda:1, got {device!r} ({e})") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"expected a device this machine has, got {device!r}: it has "
                          f"{torch.cuda.device_count()} CUDA GPU(s) visible to torch; use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"expected a device this machine has, got {device!r}: MPS is not available; use --device cpu")
    return dev


def run_device(config: TrainConfig, device: str | torch.device | None = None) -> torch.device:
    """``device`` when given (checked against this machine); else the kind of device the run trained on, when this
    machine has one, else the CPU (said in the log)."""
    if device is not None:
        return available_device(device)
    accelerator = str(getattr(config, "accelerator", "auto"))
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if accelerator in ("auto", "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    if accelerator not in ("auto", "cpu"):
        log.info("the run trained with accelerator %s, which this machine does not have: the model runs on the CPU",
                 accelerator)
    return torch.device("cpu")


def evaluate(run: str | os.PathLike, *, data: str | None = None, split: str = "test", positive: str | None = None,
             threshold: float = 0.5, target_sensitivity: float | None = None,
             target_specificity: float | None = None, calibrate: bool = False, n_boot: int = 2000,
             seed: int = 0, strict: bool = False, device: str | torch.device | None = None,
             by: str | Sequence[str] | None = None, per_group_threshold: bool = False) -> dict:
    """Evaluate a run's model on a split of its own data (default) or of another dataset with the same classes.

    Beyond the confusion matrix and its metrics, the report holds bootstrapped 95 % intervals (``n_boot``
    resamples, seeded; 0 for none), calibration (ECE, MCE, NLL, Brier, reliability bins) and, for binary tasks,
    ROC AUC, average precision and the operating point. A target sensitivity or specificity, and temperature
    scaling (``calibrate``), are fitted on the run's own validation split, never on the images evaluated.

    Writes ``metrics.json`` and ``figures/`` (confusion matrix, reliability diagram, most confident mistakes,
    ROC / precision-recall when binary) into the run folder for the run's own test split with default options,
    else into ``evaluations/<data>-<split>[-<options>]/`` inside it. Returns the report. The model runs on
    ``device`` (default: the kind the run trained on, if this machine has it), in batches streamed from the run's
    data (bounded memory whatever the split's size).

    ``by`` (manifest columns, e.g. ``"sex,age_band"``) adds a subgroup audit: the per-class report of every group
    with intervals, the gaps between groups, and ``figures/subgroups_<column>.png`` (see
    :mod:`optik.evaluation.subgroups`); binary tasks keep one threshold for every group, and
    ``per_group_threshold`` adds the threshold each group would need to reach the target rate (the one given, else
    the overall sensitivity at the threshold).
    """
    from optik.evaluation.evaluate import EvalOptions, check_binary_options

    opts = EvalOptions(positive=positive, threshold=threshold, target_sensitivity=target_sensitivity,
                       target_specificity=target_specificity, calibrate=calibrate, n_boot=n_boot, seed=seed)
    opened = Run.open(run, kind="classifier")
    saved = opened.config
    device = run_device(saved, device)
    model = opened.model(device)
    handle = opened.data(**({"data": data} if data else {}), strict=strict or None)
    if split not in handle.splits:
        raise ConfigError(f"expected --split to be one of {sorted(handle.splits)}, got {split!r}")
    if handle.classes != model.classes:
        raise DataError(f"the model was trained on classes {model.classes}, but {handle.name!r} has {handle.classes}")
    check_binary_options(model.classes, opts)
    by = [c.strip() for c in by.split(",")] if isinstance(by, str) else list(by or [])
    for column in by:
        handle.column(split, column)  # a column that is not there fails before any image is predicted
    if per_group_threshold and (len(model.classes) != 2 or not by):
        raise ConfigError(f"--per-group-threshold needs a binary task and --by; got {len(model.classes)} classes"
                          f"{'' if by else ' and no --by'}")
    own = data in (None, saved.data)
    val = None
    if opts.needs_validation:  # the run's own validation split, whatever data is evaluated
        own_val = (handle if own else opened.data()).splits.get("val")
        val = split_logits(model, own_val, device=device) if own_val is not None and len(own_val) else None
    default = own and split == "test" and opts == EvalOptions()
    out = opened.path if default else opened.path / "evaluations" / _evaluation_name(data or saved.data, split, opts)
    report = _evaluate_split(model, handle, split, out, opts, val=val, device=device,
                             audit=(by, per_group_threshold) if by else None)
    handle.warn_skipped()
    return report


def _evaluation_name(data: str, split: str, opts) -> str:
    parts = [Path(data).name, split]
    parts += [f"{k}{v}" for k, v in (("positive-", opts.positive), ("threshold", opts.threshold),
                                      ("sens", opts.target_sensitivity), ("spec", opts.target_specificity))
              if v is not None and not (k == "threshold" and v == 0.5)]
    return "-".join(parts + (["calibrated"] if opts.calibrate else []))


def split_logits(model: Classifier, split: Split, *, device: str | torch.device = "cpu", batch_size: int = 512
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The model's logits (float64) on every image of a split, and their labels; batches are streamed to
    ``device`` and conformed to the model there, and the logits stay there until the end (no copy per batch)."""
    device = torch.device(device)
    out, labels = [], []
    with torch.inference_mode(), eval_mode(model):
        for images, y in split.batches(batch_size, device=device):
            x = conform(images.to(device, non_blocking=True), model)
            out.append(model(to_float(x)).double())
            labels.append(y.to(device, non_blocking=True))
    if not out:
        return np.zeros((0, model.num_classes)), np.zeros(0, dtype=np.int64)
    return torch.cat(out).cpu().numpy(), torch.cat(labels).cpu().numpy()


def _evaluate_split(model: Classifier, data: DataHandle, split: str, out: Path, opts=None, *,
                    val: tuple[np.ndarray, np.ndarray] | None = None, device: str | torch.device = "cpu",
                    audit: tuple[list[str], bool] | None = None) -> dict:
    """Evaluate on one split; write ``metrics.json`` and the figures into ``out`` (with ``audit = (columns,
    per_group_threshold)``, the subgroup audit too)."""
    from optik.evaluation.evaluate import EvalOptions, full_evaluation
    from optik.evaluation.figures import mistakes_figure, reliability_figure, roc_pr_figure

    handle = data.splits[split]
    logits, labels = split_logits(model.to(device), handle, device=device)
    ev = full_evaluation(logits, labels, model.classes, opts or EvalOptions(), val=val)
    report = {"data": data.name, "split": split, **ev.report}
    figures = out / "figures"
    if report["confusion_matrix"] is not None:
        save_figure(confusion_figure(np.array(report["confusion_matrix"]), model.classes, title=f"{split}"),
                    figures / "confusion_matrix.png")
    else:
        (figures / "confusion_matrix.png").unlink(missing_ok=True)
    save_figure(reliability_figure(report["calibration"]["before"], title=f"{split}", after=ev.calibrated_bins),
                figures / "reliability.png")
    fig = mistakes_figure(lambda idx: conform(handle.take(idx), model), ev.probs, ev.y_true, model.classes)
    (save_figure(fig, figures / "mistakes.png") if fig is not None
     else (figures / "mistakes.png").unlink(missing_ok=True))
    if ev.curves:
        save_figure(roc_pr_figure(ev.curves["roc"], ev.curves["pr"], positive=report["binary"]["positive"],
                                  points=ev.curves["points"]), figures / "roc_pr.png")
    if audit:
        report["subgroups"] = _audit(ev, report, data, split, opts or EvalOptions(), *audit, figures=figures)
    write_json(out / "metrics.json", report)
    return report


def _audit(ev, report: dict, data: DataHandle, split: str, opts, by: list[str], per_group_threshold: bool, *,
           figures: Path) -> dict:
    """The subgroup audit of an evaluation: each column's values for the images evaluated (a streamed image found
    unreadable is left out of both), every group at the report's own predictions, and one figure per column."""
    from optik.evaluation.figures import subgroup_figure
    from optik.evaluation.metrics import predicted_labels
    from optik.evaluation.subgroups import audit, figure_name, shared_threshold_note

    skipped = getattr(data.splits[split], "skipped", {})
    columns = {c: [v for i, v in enumerate(data.column(split, c)) if i not in skipped] for c in by}
    classes, b = report["classes"], report.get("binary")
    threshold = b["threshold"] if b else 0.5
    y_pred = predicted_labels(ev.probs, classes, positive=opts.positive, threshold=threshold)
    target = {}
    if per_group_threshold:  # the target given, else the sensitivity the shared threshold reaches overall
        target = ({"target_sensitivity": opts.target_sensitivity} if opts.target_sensitivity is not None else
                  {"target_specificity": opts.target_specificity} if opts.target_specificity is not None else
                  {"target_sensitivity": b["sensitivity"]} if b["sensitivity"] > 0 else {})
        if not target:
            report["flags"].append("--per-group-threshold: the shared threshold finds no positive image, so there "
                                   "is no overall sensitivity for the groups to match; give --target-sensitivity")
    result = audit(ev.y_true, y_pred, columns, classes,
                   threshold_note=shared_threshold_note(threshold, b["threshold_source"]) if b else None,
                   n_boot=opts.n_boot, level=opts.level, seed=opts.seed, positive=opts.positive,
                   scores=ev.probs[:, classes.index(b["positive"])] if b else None, **target)
    for c in by:
        save_figure(subgroup_figure(result[c], classes, column=c,
                                    classes_shown=[result["positive"]] if b else None),
                    figures / figure_name(c))
    return result


# ------------------------------------------------------------------------------------------------ probe
def probe(run: str | os.PathLike, attribute: str, *, n_boot: int = 2000, seed: int = 0,
          max_images: int | None = 20_000, device: str | torch.device | None = None) -> dict:
    """Can the run's model see ``attribute`` (a manifest column, e.g. ``sex``)? A linear probe fitted on the
    frozen model's penultimate features of the training split predicts it on the test split; its AUC (one-vs-rest
    macro for more than two values) with a bootstrap interval stands next to a probe on raw pixels (see
    :func:`optik.evaluation.probe.probe_attribute`). At most ``max_images`` of each split (seeded draw).

    Writes ``probes/<attribute>.json`` in the run folder (shown by ``optik report``) and returns it.
    """
    from optik.evaluation.probe import probe_attribute
    from optik.evaluation.subgroups import file_safe

    opened = Run.open(run, kind="classifier")
    device = run_device(opened.config, device)
    data = opened.data()
    values = {k: data.column(k, attribute) for k in ("train", "test")}  # fails before the model is read
    result = probe_attribute(opened.model(device), data.splits["train"], data.splits["test"], values["train"],
                             values["test"], attribute=attribute, device=device, n_boot=n_boot, seed=seed,
                             max_images=max_images)
    write_json(opened.path / "probes" / f"{file_safe(attribute)}.json", result)
    data.warn_skipped()
    return result


# ------------------------------------------------------------------------------------------------ predict
def _image_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"expected an image file or a folder of images, got {str(p)!r}, which does not exist")
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found in {[str(p) for p in paths]}")
    return files


def predict(run_or_model: str | os.PathLike | Classifier, images: str | os.PathLike | Sequence[str | os.PathLike], *,
            top_k: int = 3) -> list[dict]:
    """Top-k classes with softmax probabilities for image files or folders of images.

    Unreadable files are reported with an ``error`` entry (and a warning), never silently dropped.
    """
    if top_k < 1:
        raise ConfigError(f"expected top_k >= 1, got {top_k}")
    if isinstance(images, (str, os.PathLike)):  # one path, not a sequence of one-character paths
        images = [images]
    model = run_or_model if isinstance(run_or_model, Classifier) else load(run_or_model)
    window = None  # DICOM files are windowed as the run's data were
    if not isinstance(run_or_model, Classifier) and (Path(run_or_model) / "config.yaml").is_file():
        window = data_options(Run.open(run_or_model, kind="classifier").config)["dicom_window"]
    files = _image_files(images)
    decoded, results = [], []
    for f in files:
        try:
            decoded.append((f, decode_image(f, dicom_window=window)))
        except DataError as e:
            results.append({"path": str(f), "error": str(e)})
    if results:
        warnings.warn("skipped unreadable files:\n  " + "\n  ".join(r["error"] for r in results),
                      SkippedImagesWarning, stacklevel=2)
    if decoded:
        probs = predict_proba(model, fit_images([a for _, a in decoded], model))
        results += [{"path": str(f), "top_k": top_k_classes(p, model.classes, top_k)}
                    for (f, _), p in zip(decoded, probs)]
    order = {str(f): i for i, f in enumerate(files)}
    return sorted(results, key=lambda r: order[r["path"]])


def top_k_classes(probs: np.ndarray, classes: Sequence[str], k: int) -> list[dict]:
    """``[{"class", "probability"}]`` of the ``k`` most probable classes of one image, most probable first."""
    top = np.argsort(-probs, kind="stable")[:min(k, len(classes))]
    return [{"class": classes[i], "probability": float(probs[i])} for i in top]


def run_info(run: str | os.PathLike) -> dict:
    """The saved config and metrics of a run folder."""
    opened = Run.open(run, finished=False)
    info = {"config": opened.saved}
    if (opened.path / "metrics.json").is_file():
        info["metrics"] = read_json(opened.path / "metrics.json")
    return info


# ------------------------------------------------------------------------------------------------ attack
def attack(run: str | os.PathLike, *, method: str = "pgd", eps: float | Sequence[float] | None = None,
           n: int | None = 1000, split: str = "test", batch_size: int = 500, seed: int = 0,
           device: str | torch.device | None = None, **attack_options: Any) -> dict:
    """Attack a run's model on ``n`` images of a split (a random subset drawn with ``seed``) at every ``eps``; write
    ``attacks/<method>/robustness.json``, ``robustness.png`` (accuracy vs eps) and ``gallery.png``.

    ``method`` is a name registered in :data:`optik.robustness.attacks.ATTACKS`. ``eps`` defaults to radii in the
    attack's norm: Linf 0, 0.05, 0.1, 0.2, 0.3; L2 (``pgd-l2``, ``cw``, ``norm="l2"``) 0, 0.5, 1, 1.5, 2, 3 for
    28 x 28 grey images, scaled by the square root of the number of pixel values for others.
    ``attack_options`` go to the attack (``steps``, ``alpha``, ``restarts``, ``confidence``, ...). Returns the
    report (see :func:`optik.robustness.evaluate.robustness_curve`). The attack runs on ``device`` (default: the
    kind the run trained on, if this machine has it).
    """
    from optik.data.splits import random_subset
    from optik.robustness.attacks import ATTACKS, attack_norm
    from optik.robustness.evaluate import curve_figure, default_eps, gallery_figure, pick_gallery_eps, robustness_curve

    method = ATTACKS.spec(method).name  # an unknown name raises, listing the registered ones
    if isinstance(eps, (int, float)):
        eps = [eps]
    if eps is not None and (not eps or any(not e >= 0 for e in eps)):
        raise ConfigError(f"expected one or more eps >= 0, got {list(eps)}")
    if n is not None and n < 1:
        raise ConfigError(f"expected n >= 1 images (None, or 0 on the command line: all of the split), got {n}")
    opened = Run.open(run, kind="classifier")
    device = run_device(opened.config, device)
    model, data = opened.model(device), opened.data()
    if split not in data.splits:
        raise ConfigError(f"expected --split to be one of {sorted(data.splits)}, got {split!r}")
    handle = data.splits[split]
    idx = random_subset(torch.arange(len(handle)), n or None, seed=seed)
    x = to_float(conform(handle.take(idx).to(device), model))  # n images: bounded whatever the split's size
    y = handle.labels[idx].to(device)
    norm = attack_norm(method, attack_options)
    if eps is None:
        eps = default_eps(norm, x.shape[1:])
    largest = 1.0 if norm == "linf" else float(np.sqrt(x[0].numel()))  # the distance across the pixel cube
    if max(eps) > largest:
        warnings.warn(f"eps {max(eps):g} ({norm}) is larger than the whole range of pixel values ({largest:g}): an "
                      f"attack may move every image anywhere. eps is in pixels in [0, 1] (8/255 = 0.031 for "
                      f"CIFAR's usual Linf radius)", OptikWarning, stacklevel=2)
    report, results = robustness_curve(model, x, y, method=method, eps=eps, batch_size=batch_size, seed=seed,
                                       **attack_options)
    report = {"run": str(opened.path), "data": data.name, "split": split, **report}
    out = opened.path / "attacks" / method
    write_json(out / "robustness.json", report)
    save_figure(curve_figure(report), out / "robustness.png")
    shown = pick_gallery_eps(report)
    if shown is not None:
        save_figure(gallery_figure(x.cpu(), results[shown].to("cpu"), model.classes, eps=shown), out / "gallery.png")
    report["files"] = {k: str(out / f) for k, f in
                       (("json", "robustness.json"), ("curve", "robustness.png"), ("gallery", "gallery.png"))}
    return report
