"""The playground page: the Gradio layout, and handlers that turn page inputs into :mod:`optik.serve.logic` calls
and its results into page outputs.

Private by default: telemetry off (set before Gradio is imported), no share link, bound to 127.0.0.1, and a theme
with system fonts only, so the page loads nothing from the internet. Uploads reach the handlers as file paths
(``gr.File``: Gradio stores the bytes, enforces ``max_file_size`` while receiving them, checks the extension,
and decodes nothing); every other check is :func:`optik.serve.uploads.decode_upload`'s.
"""
from __future__ import annotations

import atexit
import inspect
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry, no version check

from optik.augment.generator import FILL_MODES  # noqa: E402
from optik.core.errors import ConfigError, OptikError  # noqa: E402
from optik.models.classifier import Classifier  # noqa: E402
from optik.robustness.attacks import ATTACKS  # noqa: E402
from optik.serve import logic  # noqa: E402
from optik.serve.uploads import MAX_UPLOAD_MB, UPLOAD_EXTENSIONS, UploadError, decode_upload  # noqa: E402

try:
    import gradio as gr
except ImportError:  # pragma: no cover - depends on the installation
    raise ConfigError("optik serve needs gradio: pip install 'optik[serve]'") from None

SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial",
                "sans-serif")
MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace")
CSS = "#shown img, #attack-image img, #attack-delta img, #gradcam img {image-rendering: pixelated}"
NO_IMAGE = "Pick an example or upload an image first."
# The augmentation knobs on the page: optik's names (optik.augment.presets.KNOBS) and units
KNOB_SLIDERS = {  # name: (label, maximum, step)
    "rotation_range": ("rotation_range (degrees)", 180, 1),
    "width_shift_range": ("width_shift_range (fraction of the width)", 0.5, 0.01),
    "height_shift_range": ("height_shift_range (fraction of the height)", 0.5, 0.01),
    "shear_range": ("shear_range (degrees)", 60, 1),
    "zoom_range": ("zoom_range (z: factor in [1 - z, 1 + z])", 0.9, 0.01),
    "brightness": ("brightness (b: multiplier in [1 - b, 1 + b])", 0.9, 0.01),
}


def offline_theme() -> "gr.themes.Base":
    """Gradio's default look with system fonts: no font is fetched from Google Fonts (or anywhere)."""
    return gr.themes.Default(font=list(SYSTEM_FONTS), font_mono=list(MONO_FONTS))


@dataclass
class Current:
    """The image on the page: ``x`` ``uint8`` ``1 x C x H x W`` conformed to the model; ``label`` the true class
    of a test image (None for uploads); ``source`` says where it came from."""

    x: torch.Tensor
    label: int | None
    source: str


class Playground:
    """The page's handlers over one or more runs; each returns what its outputs show (plain values)."""

    def __init__(self, runs: Sequence[str | os.PathLike], *, max_upload_mb: float = MAX_UPLOAD_MB, top_k: int = 5,
                 n_examples: int = 8, n_augmented: int = 6):
        if not runs:
            raise ConfigError("expected one or more run folders to serve, got none")
        if not max_upload_mb > 0:
            raise ConfigError(f"expected max_upload_mb > 0, got {max_upload_mb}")
        self.runs: dict[str, logic.RunModel] = {}
        for run in runs:
            name = Path(run).name if Path(run).name not in self.runs else str(run)
            self.runs[name] = logic.load_run(run, name=name, n_examples=n_examples)
        self.max_bytes, self.top_k, self.n_augmented = int(max_upload_mb * 1e6), top_k, n_augmented

    def model(self, name: str) -> Classifier:
        return self.runs[name].model

    # ------------------------------------------------------------------ choosing an image
    def examples(self, name: str) -> list[tuple]:
        run = self.runs[name]
        return [(logic.to_display(e.image[0], size=96), f"#{e.index}: {run.model.classes[e.label]}")
                for e in run.examples]

    def describe(self, name: str) -> str:
        m = self.model(name)
        size = " x ".join(map(str, m.input_size))
        return (f"**Model** `{name}`: {m.arch.get('name', 'classifier')}, {m.num_classes} classes, "
                f"input {size} {'grey' if m.in_channels == 1 else 'RGB'}.")

    def pick_example(self, name: str, index: int) -> tuple:
        e = self.runs[name].examples[index]
        return self.show(name, Current(e.image, e.label, f"test image #{e.index}"))

    def upload(self, name: str, path: str | None) -> tuple:
        if not path:
            return self.clear("")
        try:
            array = decode_upload(path, max_bytes=self.max_bytes)
        except UploadError as e:
            return self.clear(f"**Upload refused.** {e}")
        return self.show(name, Current(logic.conform_upload(array, self.model(name)), None,
                                       f"uploaded {Path(path).name} ({array.shape[1]} x {array.shape[0]} "
                                       f"{'grey' if array.ndim == 2 else 'colour'})"))

    def show(self, name: str, current: Current) -> tuple:
        """[state, shown image, status, prediction] and the cleared attack outputs, for a new image."""
        model = self.model(name)
        probs = logic.probabilities(model, current.x, top_k=self.top_k)[0]
        top, p = next(iter(probs.items()))
        truth = f", true class **{model.classes[current.label]}**" if current.label is not None else ""
        status = f"The model sees the {current.source}{truth}: it predicts **{top}** ({p:.2%})."
        return (current, logic.to_display(current.x[0]), status, probs, *self.cleared_attack())

    def clear(self, status: str) -> tuple:
        """The outputs of :meth:`show` with no image, and ``status``."""
        return (None, None, status, None, *self.cleared_attack())

    @staticmethod
    def cleared_attack() -> tuple:
        return None, None, None, ""

    # ------------------------------------------------------------------ attack, augmentation, Grad-CAM
    def attack(self, name: str, current: Current | None, method: str, eps: float, steps: int) -> tuple:
        """[adversarial image, magnified perturbation, its top-k, a description]."""
        if current is None:
            return None, None, None, NO_IMAGE
        model = self.model(name)
        truth = current.label is not None  # no ground truth for uploads: attack the clean prediction
        label = current.label if truth else logic.predicted_class(model, current.x)
        try:  # the page's API takes any JSON: a NaN or a string gets a reason, not a generic error
            steps = logic.whole_number(steps, "steps", low=1, high=1000)
            view = logic.run_attack(model, current.x, method=method, eps=eps, label=label, steps=steps,
                                    top_k=self.top_k)
        except OptikError as e:
            return None, None, None, f"**Attack refused.** {e}"
        return (logic.to_display(view.adv[0]), logic.to_display(view.perturbation[0]), view.probabilities,
                attack_text(view, model.classes, method=method, eps=eps, truth=truth))

    def augment(self, name: str, current: Current | None, seed: float, *knobs: Any) -> tuple[list[tuple], str]:
        """The augmented samples with the model's prediction as caption, and a line about them (why a setting
        was refused, if one was)."""
        if current is None:
            return [], ""
        try:
            cfg = logic.augment_config(**dict(zip(knob_names(), knobs)))
            seed = logic.whole_number(seed or 0, "seed", low=0, high=2**63 - 1)
        except OptikError as e:
            return [], f"**Augmentation refused.** {e}"
        samples = logic.augment_samples(current.x, cfg, n=self.n_augmented, seed=seed)
        preds = logic.probabilities(self.model(name), samples, top_k=1)
        return ([(logic.to_display(s, size=112), "{} ({:.0%})".format(*next(iter(p.items()))))
                 for s, p in zip(samples, preds)], "")

    def gradcam(self, name: str, current: Current | None) -> tuple:
        """[the heat map over the image, a description]."""
        if current is None:
            return None, NO_IMAGE
        model = self.model(name)
        try:
            image = logic.gradcam_overlay(model, current.x)
        except ImportError as e:
            return None, f"Grad-CAM is not available in this installation ({e})."
        except OptikError as e:
            return None, f"Grad-CAM failed for this model: {e}"
        top = model.classes[logic.predicted_class(model, current.x)]
        return logic.to_display(image), (f"Grad-CAM of the predicted class **{top}** at the last spatial map before "
                                         f"pooling (red: where the evidence for it lies).")


def attack_text(view: logic.AttackView, classes: Sequence[str], *, method: str, eps: float, truth: bool) -> str:
    """What an attack did, in words, with its norms (pixels in [0, 1]) and the perturbation's magnification."""
    name = next(k for k, v in logic.page_attacks().items() if v == method)
    spec = ATTACKS.spec(method)
    norm = {"linf": "Linf", "l2": "L2"}[spec.norm]
    budget = f"eps is not used: it searches for the smallest {norm} perturbation" if spec.minimal \
        else f"eps = {eps:.3f} ({norm}, pixels in [0, 1])"
    label = f"{'true' if truth else 'predicted'} class **{classes[view.label]}**"
    if view.clean_class != view.label:
        label += f" (which the model already gets wrong: it predicts **{classes[view.clean_class]}**)"
    top, p = next(iter(view.probabilities.items()))
    outcome = f"the attack succeeded: now predicted **{top}** ({p:.2%})." if view.success else \
        f"the attack failed; the clean image is shown (predicted **{top}**, {p:.2%}). Try a larger eps."
    shown = f"shown magnified x{view.magnification:.1f} (grey = no change)" if view.magnification else "zero"
    return (f"**{name}**, {budget}, away from the {label}: {outcome}  \n"
            f"Perturbation: L2 = {view.l2:.4f}, Linf = {view.linf:.4f}; {shown}.")


def knob_names() -> list[str]:
    return [*KNOB_SLIDERS, "horizontal_flip", "vertical_flip", "fill_mode", "cval"]


# ---------------------------------------------------------------------------------------------------- layout
def _launch_look() -> dict:
    return {"theme": offline_theme(), "css": CSS}


# Gradio 6 takes the theme and CSS in launch(); earlier versions in the Blocks constructor
LOOK_IN_LAUNCH = "theme" in inspect.signature(gr.Blocks.launch).parameters


def _image(label: str, elem_id: str, **kw) -> "gr.Image":
    return gr.Image(label=label, interactive=False, format="png", elem_id=elem_id, **kw)


def _attack_section(top_k: int) -> dict:
    gr.Markdown("## Attack\nPerturb the image so that the model changes its mind (optik.robustness.attacks).")
    with gr.Row():
        method = gr.Radio(list(logic.page_attacks().items()), value="pgd", label="Method", elem_id="attack-method")
        eps = gr.Slider(0, 0.5, value=0.1, step=0.005, label="eps (Linf, pixels in [0, 1])", elem_id="attack-eps")
        steps = gr.Slider(1, 100, value=10, step=1, label="PGD steps", elem_id="attack-steps")
    button = gr.Button("Attack", variant="primary", elem_id="attack-run")
    with gr.Row():
        adv = _image("Adversarial image", "attack-image")
        delta = _image("Perturbation (magnified)", "attack-delta")
        probs = gr.Label(num_top_classes=top_k, label="Top-k after the attack", elem_id="attack-prediction")
    info = gr.Markdown(elem_id="attack-info")
    return {"inputs": [method, eps, steps], "button": button, "outputs": [adv, delta, probs, info]}


def _augment_section(n: int) -> dict:
    gr.Markdown(f"## Augmentation\n{n} random draws of optik.augment with these knobs (Keras' ImageDataGenerator "
                "names and units), and what the model predicts for each.")
    with gr.Row():
        sliders = {k: gr.Slider(0, top, value=0, step=step, label=label, elem_id=f"aug-{k}")
                   for k, (label, top, step) in KNOB_SLIDERS.items()}
    with gr.Row():
        flips = [gr.Checkbox(label=k, elem_id=f"aug-{k}") for k in ("horizontal_flip", "vertical_flip")]
        fill = gr.Dropdown(list(FILL_MODES), value="nearest", label="fill_mode", elem_id="aug-fill_mode")
        cval = gr.Slider(0, 1, value=0, step=0.05, label="cval (constant fill, pixels)", elem_id="aug-cval")
        seed = gr.Number(0, precision=0, label="seed", elem_id="aug-seed")
    gallery = gr.Gallery(label="Augmented samples", columns=n, height="auto", allow_preview=False,
                         interactive=False, format="png", elem_id="aug-gallery")
    info = gr.Markdown(elem_id="aug-info")
    return {"knobs": [*sliders.values(), *flips, fill, cval], "seed": seed, "outputs": [gallery, info]}


def build_app(runs: Sequence[str | os.PathLike], *, max_upload_mb: float = MAX_UPLOAD_MB, top_k: int = 5
              ) -> "gr.Blocks":
    """The playground page over classification run folders (a model dropdown when there are several).

    Launch it with :func:`serve`, which adds the offline theme, the upload limit and the local-only binding.
    """
    page = Playground(runs, max_upload_mb=max_upload_mb, top_k=top_k)
    names = list(page.runs)
    with gr.Blocks(title="optik playground", analytics_enabled=False, delete_cache=(3600, 3600),
                   **({} if LOOK_IN_LAUNCH else _launch_look())) as app:
        gr.Markdown("# optik playground\nTry a trained model: pick or upload an image, see what the model "
                    "predicts, attack it, augment it, and see where it looks.")
        model = gr.Dropdown(names, value=names[0], label="Model", visible=len(names) > 1, elem_id="model")
        about = gr.Markdown(page.describe(names[0]), elem_id="about")
        state = gr.State(None)
        with gr.Row():
            with gr.Column():
                examples = gr.Gallery(page.examples(names[0]), label="Examples from the run's test split (click one)",
                                      columns=4, height="auto", allow_preview=False, interactive=False,
                                      format="png", elem_id="examples")
                upload = gr.File(label=f"... or upload an image ({', '.join(UPLOAD_EXTENSIONS)}; at most "
                                       f"{max_upload_mb:g} MB)", file_types=list(UPLOAD_EXTENSIONS), type="filepath",
                                 elem_id="upload")
            with gr.Column():
                shown = _image("The image as the model sees it", "shown")
                status = gr.Markdown(NO_IMAGE, elem_id="status")
                prediction = gr.Label(num_top_classes=top_k, label="Top-k probabilities", elem_id="prediction")
        attack = _attack_section(top_k)
        augment = _augment_section(page.n_augmented)
        gr.Markdown("## Grad-CAM")
        cam = [_image("Grad-CAM heat map", "gradcam"), gr.Markdown(elem_id="gradcam-info")]
        _wire(page, model=model, about=about, state=state, examples=examples, upload=upload,
              image_outputs=[state, shown, status, prediction, *attack["outputs"]], attack=attack, augment=augment,
              cam=cam)
    return app


def _wire(page: Playground, *, model, about, state, examples, upload, image_outputs, attack, augment, cam) -> None:
    """Connect the events. Everything that runs the model shares one queue slot (``concurrency_id``): Grad-CAM
    hooks and attacks switch the shared model's parameter flags, so they never overlap."""
    queue = {"concurrency_id": "model", "concurrency_limit": 1}
    aug_inputs = [model, state, augment["seed"], *augment["knobs"]]

    def refresh(event) -> None:  # a new image: its Grad-CAM and augmented samples follow
        event.then(page.gradcam, [model, state], cam, **queue).then(page.augment, aug_inputs, augment["outputs"],
                                                                    **queue)

    def pick(name: str, evt: gr.SelectData):
        return *page.pick_example(name, evt.index), None  # and clear the upload box

    def switch(name: str):
        return page.describe(name), page.examples(name), *page.clear(NO_IMAGE)

    def receive(name: str, path: str | None):
        out = page.upload(name, path)
        return *out, None if out[0] is None else gr.update()  # a refused file leaves the box: upload another

    refresh(upload.upload(receive, [model, upload], [*image_outputs, upload], **queue))
    refresh(examples.select(pick, [model], [*image_outputs, upload], **queue))
    refresh(model.change(switch, [model], [about, examples, *image_outputs], **queue))
    attack["button"].click(page.attack, [model, state, *attack["inputs"]], attack["outputs"], **queue)
    gr.on([c.change for c in (augment["seed"], *augment["knobs"])], page.augment, aug_inputs, augment["outputs"],
          trigger_mode="always_last", **queue)


def private_cache() -> Path:
    """Give this process's Gradio a cache folder of its own (uploads land there), unless ``GRADIO_TEMP_DIR`` names
    one already; create it, and remove it when the process exits.

    Gradio's default is one folder shared by every Gradio app of the user (``<tmp>/gradio``), which exists only
    once some Gradio server has stored a file in it: ``gr.File`` writes into it without creating it. A folder of
    its own keeps the playground's uploads apart from other apps and their clean-ups, and always exists.
    """
    if os.environ.get("GRADIO_TEMP_DIR"):
        folder = Path(os.environ["GRADIO_TEMP_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    folder = Path(tempfile.mkdtemp(prefix="optik-serve-"))
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def launch(runs: Sequence[str | os.PathLike], *, host: str, port: int, open_browser: bool, max_upload_mb: float,
           top_k: int) -> None:
    """:func:`optik.serve.serve` once Gradio is imported: the page over ``runs``, served until interrupted."""
    private_cache()
    app = build_app(runs, max_upload_mb=max_upload_mb, top_k=top_k)
    options = {"server_name": host, "server_port": port, "inbrowser": open_browser, "share": False,
               "max_file_size": int(max_upload_mb * 1e6), "show_error": False, "ssr_mode": False, "pwa": False,
               "mcp_server": False, **(_launch_look() if LOOK_IN_LAUNCH else {})}
    accepted = inspect.signature(gr.Blocks.launch).parameters
    app.queue(default_concurrency_limit=1).launch(**{k: v for k, v in options.items() if k in accepted})


__all__ = ["Playground", "attack_text", "build_app", "launch", "offline_theme", "private_cache"]
