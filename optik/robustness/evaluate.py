"""Robustness curves: accuracy under attack as eps grows, with the numbers a reviewer asks for, sanity flags
for gradient masking, and the pictures (the curve, and a gallery in the style of Goodfellow's panda)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from optik.robustness.attacks import ATTACKS, FGSM, AttackResult, attack_mode, make_attack
from optik.robustness.attacks import attack_norm  # noqa: F401 (it lived here; older callers import it from here)

TOLERANCE = 0.005  # half a point: differences below this are noise on 1,000 images, not a finding


def _stats(values: torch.Tensor) -> tuple[float | None, float | None]:
    if not len(values):
        return None, None
    return float(values.mean()), float(values.median())


def summarize(result: AttackResult, x: torch.Tensor, eps: float | None) -> dict:
    """The figures of one attack run: clean and robust accuracy, success rate among the images the model got
    right, L2 / Linf of the successful perturbations, mean true-class confidence before and after."""
    y = result.y
    clean_ok = result.clean_logits.argmax(1) == y
    fooled = clean_ok & result.success  # images the attack broke (not those already wrong)
    robust = (result.adv_logits.argmax(1) == y)
    norms = result.norms(x)
    l2_mean, l2_median = _stats(norms["l2"][fooled])
    linf_mean, linf_median = _stats(norms["linf"][fooled])
    p_clean = F.softmax(result.clean_logits.float(), 1).gather(1, y[:, None]).squeeze(1)
    p_adv = F.softmax(result.adv_logits.float(), 1).gather(1, y[:, None]).squeeze(1)
    n_ok = int(clean_ok.sum())
    return {
        "eps": eps, "n": len(y), "clean_accuracy": float(clean_ok.float().mean()),
        "robust_accuracy": float(robust.float().mean()),
        "attack_success_rate": float(fooled.sum()) / n_ok if n_ok else None,
        "l2_mean": l2_mean, "l2_median": l2_median, "linf_mean": linf_mean, "linf_median": linf_median,
        "true_class_confidence_clean": float(p_clean.mean()), "true_class_confidence_adv": float(p_adv.mean()),
    }


def input_gradient_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 500) -> dict:
    """Share of images whose input gradient of the loss is exactly zero, and whether any is NaN / inf: both
    signs of gradient masking (or of a broken model), which make gradient attacks look weaker than they are."""
    zero, bad = 0, False
    with attack_mode(model):
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].detach().requires_grad_(True)
            loss = F.cross_entropy(model(xb), y[i:i + batch_size], reduction="sum")
            g = torch.autograd.grad(loss, xb)[0].flatten(1)
            zero += int((g.abs().amax(1) == 0).sum())
            bad |= bool((~torch.isfinite(g)).any())
    return {"zero_gradient_share": zero / max(len(x), 1), "nonfinite_gradient": bad}


# Default radii for 28 x 28 x 1 images (784 values). An L2 norm grows with the square root of the number of values,
# so L2 radii are scaled by sqrt(C * H * W / 784); Linf radii are per pixel and need no scaling.
DEFAULT_EPS = {"linf": (0.0, 0.05, 0.1, 0.2, 0.3), "l2": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)}


def eps_help() -> str:
    """``optik attack --eps``'s help: the default radii per norm, and which registered attacks measure in L2 or
    take eps as thresholds."""
    def radii(norm: str) -> str:
        return ",".join(f"{e:g}" for e in DEFAULT_EPS[norm])

    l2 = [s.name for s in ATTACKS.specs() if s.norm == "l2"]
    minimal = [s.name for s in ATTACKS.specs() if s.minimal]
    text = (f"comma-separated radii, pixels in [0, 1]: Linf (default {radii('linf')}), or L2 for "
            f"{', '.join(l2) or 'norm l2'} (default {radii('l2')} for 28 x 28 grey images, scaled by "
            f"sqrt(C*H*W/784))")
    return text + (f"; for {', '.join(minimal)} (smallest perturbation, unbounded) thresholds on the norm found"
                   if minimal else "")


def default_eps(norm: str, image_shape: Sequence[int]) -> list[float]:
    """The radii a robustness curve sweeps by default for images of ``image_shape`` (``C x H x W``)."""
    if norm == "linf":
        return list(DEFAULT_EPS["linf"])
    scale = math.sqrt(math.prod(image_shape) / 784)
    return [float(f"{e * scale:.2g}") for e in DEFAULT_EPS["l2"]]


def robustness_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, method: str, eps: Sequence[float],
                     batch_size: int = 500, seed: int = 0, **attack_kw) -> tuple[dict, dict[float, AttackResult]]:
    """Attack ``x`` at every ``eps`` and report; returns ``(report, results by eps)``.

    An attack registered with the ``minimal`` budget (``cw``) runs once, unbounded, and the report opens with what
    it found (``minimal``: how many images it fooled, the mean and median norm of their perturbations); an image
    then counts as broken at ``eps`` when its smallest successful perturbation has a norm <= eps. Iterative
    attacks are also compared with FGSM at the same Linf eps (an iterative attack weaker than one step is a sign of
    gradient masking or a bug). ``notes`` lists what an attack did differently from its paper (e.g. a loss
    undefined for two classes).
    """
    eps = sorted(float(e) for e in eps)
    results: dict[float, AttackResult] = {}
    rows, notes, minimal = [], [], None
    spec = ATTACKS.spec(method)
    if spec.minimal:
        attack = make_attack(method, model, eps=None, batch_size=batch_size, seed=seed, **attack_kw)
        full = attack(x, y)
        notes += attack.notes
        found = full.norms(x)[attack.norm]
        minimal = summarize(full, x, None)
        for e in eps:
            within = full.success & (found <= e + 1e-6)
            r = AttackResult(torch.where(within[:, None, None, None], full.adv, x), within, full.clean_logits,
                             torch.where(within[:, None], full.adv_logits, full.clean_logits), y)
            results[e] = r
            rows.append(summarize(r, x, e))
        norm = attack.norm
    else:
        for e in eps:
            attack = make_attack(method, model, eps=e, batch_size=batch_size, seed=seed, **attack_kw)
            results[e] = attack(x, y)
            notes += [n for n in attack.notes if n not in notes]
            rows.append(summarize(results[e], x, e))
        norm = attack.norm
    report = {"method": method, "norm": norm, "n": len(y), "seed": seed, "attack_options": attack_kw,
              "clean_accuracy": rows[0]["clean_accuracy"] if rows else None, "per_eps": rows}
    if minimal is not None:
        report["minimal"] = minimal
    report["notes"] = list(dict.fromkeys(notes))
    if spec.iterative and norm == "linf":
        report["fgsm_robust_accuracy"] = [
            summarize(FGSM(model, eps=e, batch_size=batch_size)(x, y), x, e)["robust_accuracy"] for e in eps]
    report["gradients"] = input_gradient_check(model, x, y, batch_size=batch_size)
    report["flags"] = sanity_flags(report)
    return report, results


def sanity_flags(report: dict) -> list[str]:
    """Warnings a careful reader would raise: each names what it saw."""
    flags = []
    rows = report["per_eps"]
    for a, b in zip(rows, rows[1:]):
        if b["robust_accuracy"] > a["robust_accuracy"] + TOLERANCE:
            flags.append(f"robust accuracy rises with eps: {a['robust_accuracy']:.3f} at eps={a['eps']:g} -> "
                         f"{b['robust_accuracy']:.3f} at eps={b['eps']:g} (gradient masking, or too few steps)")
    for row, fgsm in zip(rows, report.get("fgsm_robust_accuracy", [])):
        if row["robust_accuracy"] > fgsm + TOLERANCE:
            flags.append(f"{report['method']} is weaker than FGSM at eps={row['eps']:g}: robust accuracy "
                         f"{row['robust_accuracy']:.3f} vs {fgsm:.3f} (gradient masking, or a too small step size)")
    g = report.get("gradients", {})
    if g.get("nonfinite_gradient"):
        flags.append("NaN or infinite input gradients: gradient attacks cannot be trusted on this model")
    if g.get("zero_gradient_share", 0) > 0.01:
        flags.append(f"{100 * g['zero_gradient_share']:.1f} % of images have an exactly zero input gradient "
                     "(saturated softmax or masking): gradient attacks understate the risk; try apgd (DLR loss)")
    attacked = [r for r in rows if r["eps"] and r["eps"] > 0]
    if attacked and all(r["robust_accuracy"] >= r["clean_accuracy"] for r in attacked) and len(attacked) > 1:
        flags.append("the attack changed nothing at any eps > 0: check that it runs on this model")
    return flags


# ------------------------------------------------------------------------------------------------ figures
def curve_figure(report: dict):
    import matplotlib.pyplot as plt

    rows = report["per_eps"]
    eps = [r["eps"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 4), constrained_layout=True)
    ax.plot(eps, [100 * r["robust_accuracy"] for r in rows], "o-", label=f"{report['method']} ({report['norm']})")
    if "fgsm_robust_accuracy" in report:
        ax.plot(eps, [100 * a for a in report["fgsm_robust_accuracy"]], "s--", color="grey", alpha=0.7,
                label="FGSM (reference)")
    ax.axhline(100 * report["clean_accuracy"], color="black", lw=0.8, ls=":", label="clean")
    ax.set_xlabel(f"eps ({'L2' if report['norm'] == 'l2' else 'Linf'}, pixels in [0, 1])")
    ax.set_ylabel("accuracy under attack (%)")
    ax.set_ylim(0, 101)
    ax.set_title(f"Robustness on {report['n']} images")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def gallery_figure(x: torch.Tensor, result: AttackResult, classes: Sequence[str], *, eps: float | None,
                   max_examples: int = 6):
    """Rows of (original with label and confidence, perturbation magnified, adversarial with label and
    confidence), for images the model got right and the attack fooled (others if none was fooled)."""
    import matplotlib.pyplot as plt

    y = result.y
    clean_ok = result.clean_logits.argmax(1) == y
    idx = (clean_ok & result.success).nonzero().flatten()
    if not len(idx):
        idx = clean_ok.nonzero().flatten()
    seen, picked = set(), []
    for i in idx.tolist():  # one image per true class first: splits are often sorted by class
        if int(y[i]) not in seen:
            seen.add(int(y[i]))
            picked.append(i)
    idx = (picked + [i for i in idx.tolist() if i not in picked])[:max_examples]
    rows = max(1, len(idx))
    fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows), squeeze=False, constrained_layout=True)
    p_clean = F.softmax(result.clean_logits.float(), 1)
    p_adv = F.softmax(result.adv_logits.float(), 1)
    for r, i in enumerate(idx):
        delta = (result.adv[i] - x[i]).float()
        scale = delta.abs().max().item()
        shown = 0.5 + delta / (2 * scale) if scale > 0 else torch.full_like(delta, 0.5)
        c, pa = int(p_clean[i].argmax()), int(p_adv[i].argmax())
        panels = [(x[i], f"{classes[c]}  {100 * p_clean[i, c]:.1f} %"),
                  (shown, f"perturbation x{0.5 / scale:.0f}\nL2 {delta.norm():.2f}, Linf {scale:.3f}" if scale > 0
                   else "no perturbation\n(the attack failed here)"),
                  (result.adv[i], f"{classes[pa]}  {100 * p_adv[i, pa]:.1f} %")]
        for ax, (img, title) in zip(axes[r], panels):
            arr = img.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
            ax.imshow(arr[..., 0] if arr.shape[2] == 1 else arr, cmap="gray" if arr.shape[2] == 1 else None,
                      vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    for ax in axes[len(idx):].flatten() if len(idx) < rows else []:
        ax.axis("off")
    fig.suptitle(f"{'eps = ' + format(eps, 'g') if eps is not None else 'minimal perturbation'}: original, "
                 f"perturbation (magnified), adversarial", fontsize=10)
    return fig


def pick_gallery_eps(report: dict) -> float | None:
    """The smallest eps at which the attack fooled at least half of the images it could: the pictures show a
    perturbation that works without being the largest one."""
    rows = [r for r in report["per_eps"] if r["eps"] and r["attack_success_rate"]]
    for r in rows:
        if r["attack_success_rate"] >= 0.5:
            return r["eps"]
    return rows[-1]["eps"] if rows else (report["per_eps"][-1]["eps"] if report["per_eps"] else None)

