"""The words of `optik`'s sub-commands: a one-line help for each, and for each parameter of the function a command
calls, its help text and the argparse settings a signature cannot say (see :mod:`optik.core.flags`). Defaults,
types and which flags exist come from the functions' signatures; the CLI (:mod:`optik.cli`) builds its parser from
these and dispatches. Nothing here is a default: ``%(default)s`` in a help text prints the signature's."""
from __future__ import annotations

from optik.core.io import RESUME_FROM
from optik.data.folder import SPLIT_NAMES
from optik.generative.models import VAEModel
from optik.generative_api import INTERPOLATIONS
from optik.interpret_api import METHODS as EXPLAIN_METHODS
from optik.models.cnn import __doc__ as MODELS_DESCRIPTION  # the CNN spec language, under `optik models --help`
from optik.robustness.attacks import ATTACKS, methods_help
from optik.robustness.evaluate import eps_help

HELP = {
    "datasets": "list built-in and downloadable datasets",
    "models": "list models that can be built",
    "train": "train a classifier into a run folder",
    "prepare": "write a folder or manifest as resized LitData shards, to train from many times (local folder or "
               "object store)",
    "evaluate": "confusion matrix and per-class metrics of a run's model",
    "probe": "can the model see a patient attribute? a linear probe on its features",
    "predict": "top-k classes of image files or folders",
    "augment": "augmentation tools",
    "preview": "a grid of one image under every knob and under your settings",
    "attack": "robust accuracy of a run's model under an attack, as eps grows",
    "sample": "images from a trained GAN or VAE: a PNG grid or a .npz of uint8 arrays",
    "interpolate": "paths through a GAN's or VAE's latent space (VAE: between test images)",
    "quality": "FID, KID, precision/recall and class histogram of a GAN / VAE run",
    "explain": "what a run's model looks at: Grad-CAM, saliency, feature maps, filters",
    "report": "one self-contained report.html of a run: metrics, curves, calibration, Grad-CAM, attacks, samples",
    "serve": "a local web playground: predict, attack, augment, Grad-CAM (Gradio)",
    "demo": "train, evaluate, predict, attack, then train a VAE, on built-in mnist5k (about 3 min on 2 CPU cores)",
}
PREPARE_CONFIG_FLAGS = ("group_column", "dicom_window")  # prepare's flags with TrainConfig's help texts

# ------------------------------------------------------------------------------------------------ attack methods
# The attacks `optik attack` runs (--method): the attack registry's names and summaries, read when the parser is
# built (see `flags`); and the attacks' own options (passed to the attack; None keeps each attack's default).
ATTACK_OPTIONS = {
    "steps": {"kwargs": True, "type": int,
              "help": "iterations (pgd: 10, apgd/strong: 100, cw: 100 Adam steps per constant, 6 constants)"},
    "alpha": {"kwargs": True, "type": float, "help": "pgd step size (default 2.5 * eps / steps)"},
    "restarts": {"kwargs": True, "type": int, "help": "pgd random restarts (worst case per image is kept)"},
    "confidence": {"kwargs": True, "type": float, "help": "cw: kappa, the logit margin a success must reach"},
}

# ------------------------------------------------------------------------------------------------ flags
RUN_DEVICE = "(default: the kind the run trained on, if this machine has it)"
TRAIN_RUN = {  # optik train, and the generative trainers with their own texts
    "config": {"flag": "--config", "help": "YAML file of TrainConfig keys, or a run's config.yaml; flags override it"},
    "out": "run folder (default: a new folder under runs/)",
    "overwrite": "replace an existing --out (only a run folder optik made, not in use, not holding --data)",
    "resume": {"metavar": "RUN", "help": "continue an interrupted run from its last checkpoint"},
    "resume_from": {"choices": RESUME_FROM,
                    "help": "with --resume: the last completed epoch (default) or the best validation epoch"},
    "progress": "no progress bar",
}
FLAGS = {
    "datasets": {"pattern": "glob on names, e.g. 'cifar*'"},
    "train": TRAIN_RUN,
    "generative train": {**{k: v for k, v in TRAIN_RUN.items() if k != "resume_from"},
                         "config": {"flag": "--config", "help": "YAML file of config keys; flags override it"},
                         "overwrite": "replace an existing --out"},
    "prepare": {
        "data": "a folder of class folders or a .csv manifest",
        "out": "the folder to write (copy it to s3://... to stream from there)",
        "image_size": "resize every image to N x N pixels",
        "val_fraction": "of the non-test images (default: %(default)s)",
        "test_fraction": "(default: %(default)s)",
        "split_seed": "fixes the split (default: %(default)s)",
        "workers": "decoding processes (default: the cores)",
        "progress": "no progress output",
    },
    "evaluate": {
        "data": "another dataset with the same classes (default: the run's own)",
        "split": {"choices": SPLIT_NAMES},
        "positive": "binary tasks: the positive class (default: the second class)",
        "threshold": "binary tasks: threshold on P(positive)",
        "target_sensitivity": {"group": "target", "metavar": "RATE",
                               "help": "binary tasks: the threshold reaching this sensitivity on the validation split"},
        "target_specificity": {"group": "target", "metavar": "RATE",
                               "help": "binary tasks: the threshold reaching this specificity on the validation split"},
        "calibrate": "temperature scaling fitted on the validation split; report on the scaled probabilities",
        "n_boot": {"flag": "--bootstrap", "metavar": "N",
                   "help": "resamples for the 95%% confidence intervals (0: none)"},
        "seed": "seeds the bootstrap",
        "strict": "stop at an unreadable image instead of skipping it",
        "device": f"where the model runs, in batches: cpu | cuda | cuda:1 ... {RUN_DEVICE}",
        "by": {"metavar": "COLUMNS",
               "help": "manifest columns to audit by, comma separated (e.g. sex,age_band): every group's "
                       "sensitivity, specificity, PPV and NPV with intervals, and the gaps between groups"},
        "per_group_threshold": "binary, with --by: also the threshold each group would need to reach the target "
                               "(--target-sensitivity / --target-specificity, else the overall sensitivity)",
    },
    "probe": {
        "attribute": {"flag": "--attribute", "help": "a column of the run's manifest (e.g. sex)"},
        "n_boot": {"flag": "--bootstrap", "metavar": "N", "help": "resamples for the AUC's 95%% interval"},
        "seed": "seeds the image draw and the bootstrap",
        "max_images": {"metavar": "N", "help": "at most N images of each split (a seeded draw; default: %(default)s)"},
        "device": "where the model runs (default: the kind the run trained on, if here)",
    },
    "predict": {"run_or_model": {"metavar": "run"}, "images": {"nargs": "+", "metavar": "IMAGE_OR_FOLDER"}},
    "preview": {"out": {"flag": "--out", "default": "augment_preview.png", "help": "PNG to write"}},
    "attack": {
        "n": "images of the split to attack (0: all)",
        "split": {"choices": SPLIT_NAMES},
        **ATTACK_OPTIONS,
        "batch_size": "images per pass (bounds memory)",
        "seed": {},
        "device": f"cpu | cuda | cuda:1 ... {RUN_DEVICE}",
    },
    "sample": {
        "n": "how many images (default: %(default)s)",
        "out": {"default": "samples.png",
                "help": "a .png grid (default: %(default)s) or a .npz of uint8 arrays N x C x H x W"},
        "seed": {},
        "labels": "conditional GANs: comma-separated class indices (default: balanced)",
        "temperature": "spread of the latent codes around their means (1: as drawn)",
        "codes": {"choices": VAEModel.CODE_SOURCES, "help": "VAE: draw codes from the latent mixture fitted after "
                                                            "training (the default when the run has one) or from the "
                                                            "model's prior"},
    },
    "interpolate": {
        "out": {"default": "interpolation.png", "help": "the figure (default: %(default)s)"},
        "method": {"choices": INTERPOLATIONS, "help": "spherical (the default, for Gaussian codes) or straight-line "
                                                      "paths"},
        "rows": "paths, one per row (default: %(default)s)",
        "steps": "images along each path, ends included (default: %(default)s)",
        "seed": "picks the end codes (VAE: the test images)",
    },
    "quality": {
        "n": "test images to compare with, a seeded random subset (0: all)",
        "features": "an optik classification run, or inception:PATH (default: the run's)",
        "seed": {},
        "codes": {"choices": VAEModel.CODE_SOURCES, "help": "VAE: where sample codes come from (see sample)"},
    },
    "explain": {
        "run_or_model": {"metavar": "run"},
        "image": "the image to explain (not needed for --method filters)",
        "method": {"choices": EXPLAIN_METHODS},
        "out": "PNG to write (default: <image>-<method>.png)",
        "target": {"type": str, "help": "class to explain, by name or index (default: the predicted class)"},
        "layer": "layer for gradcam / feature-maps (default: the last spatial map); a wrong name lists the valid ones",
    },
    "report": {"out": "HTML file to write (default: <run>/report.html)"},
    "serve": {
        "runs": {"nargs": "+", "metavar": "RUN", "help": "classification run folders (a dropdown picks one)"},
        "host": "interface to bind (default: this machine only)",
        "port": {},
        "max_upload_mb": "largest upload accepted",
        "open_browser": {"flag": "--open", "help": "open the page in the default browser"},
    },
    "demo": {"out": "run folder (default: a new folder under runs/)"},
}


def flags(command: str) -> dict | None:
    """The help texts and settings of a command's flags. `optik attack`'s ``--method`` and ``--eps`` are read from
    the attack registry now, not at import: an attack registered later (a plugin, a test) is offered too."""
    spec = FLAGS.get(command)
    if command == "attack":
        spec = {"method": {"type": str.lower, "choices": ATTACKS.names(), "metavar": "METHOD",
                           "help": methods_help()},
                "eps": {"type": str, "help": eps_help()}, **spec}
    return spec
