"""`optik` on the command line: parse arguments, call the API, print. No logic lives here."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import warnings
from typing import Sequence

from optik.core.config import TrainConfig
from optik.core.errors import ConfigError, OptikError


def _console():
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)  # logs and pipes get wide tables


# ------------------------------------------------------------------------------------------------ train flags
def _add_config_flags(p: argparse.ArgumentParser, only: Sequence[str] | None = None, *, schema=TrainConfig) -> None:
    """One flag per config field (``--batch-size``), defaulting to 'not given' so YAML values survive."""
    for f in dataclasses.fields(schema):
        if only is not None and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", "") + ("" if f.default is None and "default" in f.metadata.get("help", "")
                                              else f" (default: {f.default})")
        if str(f.type).startswith("bool"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:  # values stay strings here; the config schema converts and checks them
            p.add_argument(flag, default=None, metavar=f.name.upper(), help=help_)


def _overrides(args: argparse.Namespace, schema=TrainConfig) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(schema) if getattr(args, f.name) is not None}


# ------------------------------------------------------------------------------------------------ commands
def _print_rows(rows: list[dict], columns: dict[str, str], *, title: str, as_json: bool) -> None:
    """Rows as JSON for machines, or a Rich table of ``columns`` (key -> header) for people."""
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(*columns.values(), title=title)
    for r in rows:
        table.add_row(*(str(r.get(k, "")) for k in columns))
    _console().print(table)


def cmd_datasets(args) -> None:
    from optik.data import list_datasets

    rows = [{**r, "offline": "yes" if r["offline"] else "download"} for r in list_datasets(args.pattern)]
    _print_rows(rows if not args.json else list_datasets(args.pattern), {"name": "name", "offline": "offline",
                "summary": "summary"}, title="datasets (or pass a folder of class folders / a .csv manifest)",
                as_json=args.json)


def cmd_models(args) -> None:
    from optik.models import list_models
    from optik.models.zoo import zoo_table

    cnns = [m for m in list_models(args.pattern) if m.get("family") != "zoo"]
    zoo = zoo_table(args.pattern)
    if args.json:
        print(json.dumps({"cnn": cnns, "zoo": zoo}, indent=2))
        return
    if not cnns and not zoo:
        raise ConfigError(f"no model matches {args.pattern!r}; `optik models` lists them all (a pattern is a "
                          f"shell-style wildcard, e.g. 'resnet*')")
    if cnns:
        _print_rows(cnns, {"name": "name", "summary": "summary", "spec": "spec"},
                    title="CNNs (or pass a CNN spec string; see `optik models --help`)", as_json=False)
    if zoo:
        rows = [{**r, "params_m": r["params_m"] if r["params_m"] is not None else "-",
                 "top": f"{r['keras_top1']} / {r['keras_top5']}",
                 "pretrained": (f"{len(r['pretrained'])}: {r['pretrained'][0]}" if r["pretrained"]
                                else r.get("note", "none")),
                 "weights_top1": (f"{r['weights_top1']:.1f} @ {r['weights_eval_size']}" if r["weights_top1"]
                                  else "-")} for r in zoo]
        _print_rows(rows, {"keras": "Keras name", "timm": "timm", "params_m": "params (M)",
                           "keras_params_m": "Keras params (M)", "keras_depth": "Keras depth",
                           "input_size": "input", "top": "Keras top-1 / top-5 (%)",
                           "pretrained": "timm weights (count: default)", "weights_top1": "default top-1 @ px"},
                    title="model zoo (any other timm name works too; params differ from Keras by counting "
                          "conventions, see docs/zoo.md)", as_json=False)


def cmd_train(args) -> None:
    import optik

    result = optik.train(args.config, out=args.out, overwrite=args.overwrite, resume=args.resume,
                         resume_from=args.resume_from, progress=not args.no_progress, **_overrides(args))
    if result.model is None:
        return  # a data-parallel worker: rank 0 reports
    con = _console()
    _print_report(result.metrics, con)
    con.print(f"run folder: [bold]{result.run_dir}[/]")


def cmd_prepare(args) -> None:
    import optik

    out = optik.prepare(args.data, out=args.out, image_size=args.image_size, val_fraction=args.val_fraction,
                        test_fraction=args.test_fraction, split_seed=args.split_seed, workers=args.workers,
                        progress=not args.no_progress, group_column=args.group_column,
                        dicom_window=args.dicom_window)
    print(f"shards written to {out}; train with: optik train --data {out}")


def cmd_evaluate(args) -> None:
    import optik

    report = optik.evaluate(args.run, data=args.data, split=args.split, positive=args.positive,
                            threshold=args.threshold, target_sensitivity=args.target_sensitivity,
                            target_specificity=args.target_specificity, calibrate=args.calibrate,
                            n_boot=args.bootstrap, seed=args.seed, strict=args.strict, device=args.device,
                            by=args.by, per_group_threshold=args.per_group_threshold)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    con = _console()
    _print_report(report, con)
    if "subgroups" in report:
        from optik.console import print_subgroups

        print_subgroups(report["subgroups"], con)


def cmd_probe(args) -> None:
    import optik
    from optik.console import print_probe

    result = optik.probe(args.run, args.attribute, n_boot=args.bootstrap, seed=args.seed,
                         max_images=args.max_images, device=args.device)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_probe(result, _console())


def cmd_predict(args) -> None:
    import optik

    from optik.data.folder import SkippedImagesWarning

    with warnings.catch_warnings():  # each unreadable file gets its own line below, in order
        warnings.simplefilter("ignore", SkippedImagesWarning)
        results = optik.predict(args.run, args.images, top_k=args.top_k)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    con = _console()
    for r in results:
        if "error" in r:  # the error names the file
            con.print(f"[red]{r['error']}[/]", highlight=False)
        else:
            tops = "  ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top_k"])
            con.print(f"{r['path']}: {tops}")


def cmd_augment_preview(args) -> None:
    from optik.augment.generator import AugmentConfig
    from optik.augment.presets import KNOBS, make_augment
    from optik.augment.preview import save_preview
    from optik.core.config import TrainConfig, from_dict

    knobs = {k: getattr(args, k) for k in KNOBS if getattr(args, k) is not None}
    values = from_dict(TrainConfig, {"augment": args.augment or "default", **knobs}, source="arguments")
    cfg = make_augment(values.augment, **{k: getattr(values, k) for k in KNOBS})
    out = save_preview(args.image, cfg or AugmentConfig(), args.out, seed=args.seed)
    print(f"preview written to {out}")


def cmd_attack(args) -> None:
    import optik

    try:
        eps = None if args.eps is None else [float(e) for e in args.eps.split(",")]
    except ValueError:
        raise ConfigError(f"expected --eps as comma-separated numbers, e.g. 0,0.1,0.3, got {args.eps!r}") from None
    options = {k: v for k, v in (("steps", args.steps), ("alpha", args.alpha), ("restarts", args.restarts),
                                 ("confidence", args.confidence)) if v is not None}
    report = optik.attack(args.run, method=args.method, eps=eps, n=args.n or None, split=args.split,
                          batch_size=args.batch_size, seed=args.seed, device=args.device, **options)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print_robustness(report, _console())


def print_robustness(report: dict, con) -> None:
    from rich.table import Table

    t = Table("L2 threshold" if "minimal" in report else "eps", "robust acc", "success", "L2 mean", "L2 median", "Linf mean", "P(true) clean", "P(true) adv",
              title=f"{report['method']} ({report['norm']}) on {report['n']} {report.get('split', '')} images: "
                    f"clean accuracy {report['clean_accuracy']:.4f}",
              caption="success = share of the correctly classified images the attack fooled; norms of the "
                      "successful perturbations (pixels in [0, 1])")

    def f(v, fmt=".4f"):
        return "-" if v is None else format(v, fmt)

    if "minimal" in report:  # a minimal-perturbation attack: what it found first, the curve over thresholds after
        m = report["minimal"]
        con.print(f"{report['method']} (minimal perturbation, unbounded) on {report['n']} images: fooled "
                  f"[bold]{f(m['attack_success_rate'], '.1%')}[/] of those classified correctly "
                  f"(robust accuracy {f(m['robust_accuracy'])}); L2 of the perturbations: mean "
                  f"[bold]{f(m['l2_mean'], '.3f')}[/], median [bold]{f(m['l2_median'], '.3f')}[/]")
    for r in report["per_eps"]:
        t.add_row(f(r["eps"], "g"), f"[bold]{r['robust_accuracy']:.4f}[/]", f(r["attack_success_rate"]),
                  f(r["l2_mean"], ".3f"), f(r["l2_median"], ".3f"), f(r["linf_mean"], ".3f"),
                  f(r["true_class_confidence_clean"], ".3f"), f(r["true_class_confidence_adv"], ".3f"))
    con.print(t)
    for note in report.get("notes", []):
        con.print(f"note: {note}")
    for flag in report["flags"]:
        con.print(f"[yellow]warning:[/] {flag}")
    if "files" in report:
        con.print(f"written: {report['files']['json']}, robustness.png, gallery.png")


def cmd_generative_train(args) -> None:
    from optik import generative_api as gen

    train = gen.train_gan if args.kind == "gan" else gen.train_vae
    result = train(args.config, out=args.out, overwrite=args.overwrite, resume=args.resume,
                   progress=not args.no_progress, **_overrides(args, gen.KINDS[args.kind]))
    con = _console()
    print_quality(result.metrics, con)
    con.print(f"run folder: [bold]{result.run_dir}[/]  (optik sample {result.run_dir} --n 64 --out grid.png)")


def print_quality(m: dict, con) -> None:
    """The sample-quality block of a generative run's metrics (or of `optik quality`)."""
    q = m.get("test", m)
    if "fid" in q:
        floor = m.get("fid_floor_train_vs_test")
        con.print(f"sample quality, {q['n_fake']} samples vs {q['n_real']} test images: FID [bold]{q['fid']:.3f}[/]"
                  + (f" (floor, train vs test images: {floor:.3f})" if floor is not None else "")
                  + f"  KID {q['kid_mean']:.4f} +- {q['kid_std']:.4f}  precision {q['precision']:.3f}  "
                    f"recall {q['recall']:.3f}")
        if m.get("codes_from") == "fitted":
            other = m.get("test_prior_codes")
            con.print("codes drawn from the latent mixture fitted to the training images"
                      + (f" (codes from the model's prior instead: FID {other['fid']:.3f})" if other else ""))
        hist = q.get("class_histogram")
        if hist:
            shares = "  ".join(f"{c} {v:.1%}" for c, v in hist["fractions"].items())
            con.print(f"classes of the samples (feature classifier): {shares}")
            if hist["missing"]:
                con.print(f"[yellow]warning:[/] classes under {hist['min_fraction']:.0%} of the samples: "
                          f"{', '.join(hist['missing'])} (mode collapse)")
    if "test_neg_elbo" in m:
        e = m["test_neg_elbo"]
        con.print(f"test -ELBO [bold]{e['neg_elbo']:.2f}[/] nats per image (reconstruction {e['nll']:.2f} + KL "
                  f"{e['kl']:.2f})")


def cmd_sample(args) -> None:
    from optik import generative_api as gen

    labels = [int(v) for v in args.labels.split(",")] if args.labels else None
    x = gen.sample(args.run, n=args.n, out=args.out, seed=args.seed, labels=labels, temperature=args.temperature,
                   codes=args.codes)
    print(f"{len(x)} samples written to {args.out}")


def cmd_interpolate(args) -> None:
    from optik import generative_api as gen

    out = gen.interpolate(args.run, out=args.out, method=args.method, rows=args.rows, steps=args.steps,
                          seed=args.seed)
    print(f"interpolation written to {out}")


def cmd_quality(args) -> None:
    from optik import generative_api as gen

    report = gen.quality(args.run, n=args.n or None, features=args.features, seed=args.seed, codes=args.codes)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_quality(report, _console())


def cmd_explain(args) -> None:
    from optik.interpret_api import explain

    target = int(args.target) if args.target is not None and args.target.isdigit() else args.target
    r = explain(args.run, args.image, method=args.method, out=args.out, target=target, layer=args.layer,
                top_k=args.top_k)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    if r["prediction"]:
        print("prediction: " + "  ".join(f"{t['class']} {t['probability']:.3f}" for t in r["prediction"]))
    details = ", ".join(f"{k} {r[k]}" for k in ("layer", "target") if r.get(k) is not None)
    print(f"{r['method']}{f' ({details})' if details else ''} written to {r['out']}")


def cmd_report(args) -> None:
    from optik.report import write_report

    path = write_report(args.run, out=args.out)
    print(f"report written to {path}  (one self-contained HTML file; open it in any browser)")


def cmd_serve(args) -> None:
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"expected --port in 1-65535, got {args.port}")
    from optik.serve import serve  # without Gradio: a ConfigError saying how to install it

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"optik serve: warning: --host {args.host} makes the playground reachable from the network, and it "
              "has no login", file=sys.stderr)
    serve(args.runs, host=args.host, port=args.port, open_browser=args.open, max_upload_mb=args.max_upload_mb)


def cmd_demo(args) -> None:
    from optik.demo import run_demo

    run_demo(out=args.out, console=_console(), progress=not args.no_progress)


# ------------------------------------------------------------------------------------------------ printing
def _print_report(report: dict, con) -> None:
    from rich.table import Table

    t = Table("class", "n", "TP", "FP", "TN", "FN", "sens", "spec", "PPV", "NPV", "F1",
              title=f"{report.get('data', '')} / {report.get('split', '')}: {report['n']} images",
              caption="sens = sensitivity (recall, TPR), spec = specificity (TNR), PPV = precision, "
                      "NPV = negative predictive value; one class against the rest")
    for name, m in report["per_class"].items():
        t.add_row(name, *(str(m[k]) for k in ("support", "tp", "fp", "tn", "fn")),
                  *(f"{m[k]:.3f}" for k in ("sensitivity", "specificity", "precision", "npv", "f1")))
    t.add_section()
    for avg in ("macro", "weighted"):
        t.add_row(avg, "", "", "", "", "", *(f"{report[avg][k]:.3f}"
                                             for k in ("sensitivity", "specificity", "precision", "npv", "f1")))
    con.print(t)
    topk = "  ".join(f"top-{k} {v:.4f}" for k, v in report.get("top_k_accuracy", {}).items())
    con.print(f"accuracy [bold]{report['accuracy']:.4f}[/]  balanced accuracy {report['balanced_accuracy']:.4f}  "
              f"{topk}  type I errors (FP) {report['type_i_errors']}  type II errors (FN) {report['type_ii_errors']}")
    if "intervals" in report:
        from optik.evaluation.bootstrap import format_interval

        ci = report["intervals"]
        con.print(f"accuracy {ci['level']:.0%} CI {format_interval(ci['accuracy'])} ({ci['method']}, "
                  f"{ci['n_boot']} resamples, seed {ci['seed']})")
    if "binary" in report:
        _print_binary(report["binary"], con)
    if "calibration" in report:
        c = report["calibration"]
        line = (f"calibration: ECE {c['before']['ece']:.4f}  MCE {c['before']['mce']:.4f}  NLL {c['before']['nll']:.4f}"
                f"  Brier {c['before']['brier']:.4f}")
        if "after" in c:
            line += (f"  -> temperature {c['temperature']:.3f} (fitted on {c['fitted_on']}): ECE "
                     f"{c['after']['ece']:.4f}  NLL {c['after']['nll']:.4f}")
        con.print(line)
    for flag in report.get("flags", []):
        con.print(f"[yellow]warning:[/] {flag}")
    if report.get("undefined"):
        con.print(f"[dim]undefined (0/0, reported as 0): {', '.join(report['undefined'][:10])}"
                  f"{' ...' if len(report['undefined']) > 10 else ''}[/]")


def _print_binary(b: dict, con) -> None:
    from optik.evaluation.bootstrap import format_interval

    source = {"given": "", "val": ", chosen on the validation split"}.get(b.get("threshold_source", "given"),
                                                                      ", chosen on the evaluated split")
    target = "".join(f" for {k} {v}" for k, v in b.get("target", {}).items())
    con.print(f"binary, positive = {b['positive']!r}, threshold {b['threshold']:.4g}{target}{source}:")
    ci = b.get("intervals", {})
    for key, name in (("sensitivity", "sensitivity"), ("specificity", "specificity"), ("precision", "PPV"),
                      ("npv", "NPV")):
        con.print(f"  {name:<12} {b[key]:.4f}  {format_interval(ci.get(key))}")
    con.print(f"  type I errors (FP) {b['fp']} (rate {b['fpr']:.4f})  type II errors (FN) {b['fn']} "
              f"(rate {b['fnr']:.4f})")
    if "roc_auc" in b:
        con.print(f"  ROC AUC {b['roc_auc']:.4f}  average precision {b['average_precision']:.4f}  "
                  f"prevalence {b['prevalence']:.3f}")


# ------------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="optik", description="Classify and evaluate images, attack and defend models, train GANs and VAEs, with PyTorch.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("datasets", help="list built-in and downloadable datasets")
    s.add_argument("pattern", nargs="?", default="*", help="glob on names, e.g. 'cifar*'")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_datasets)

    from optik.augment.presets import KNOBS
    from optik.models.cnn import __doc__ as spec_doc

    s = sub.add_parser("models", help="list models that can be built", description=spec_doc,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("pattern", nargs="?", default="*")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("train", help="train a classifier into a run folder")
    s.add_argument("--config", help="YAML file of TrainConfig keys, or a run's config.yaml; flags override it")
    s.add_argument("--out", help="run folder (default: a new folder under runs/)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out (only a run folder optik made, not in use, not holding --data)")
    s.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last checkpoint")
    s.add_argument("--resume-from", choices=("last", "best"), default="last",
                   help="with --resume: the last completed epoch (default) or the best validation epoch")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_config_flags(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("prepare", help="write a folder or manifest as resized LitData shards, to train from many "
                                       "times (local folder or object store)")
    s.add_argument("data", help="a folder of class folders or a .csv manifest")
    s.add_argument("--out", required=True, help="the folder to write (copy it to s3://... to stream from there)")
    s.add_argument("--image-size", type=int, required=True, help="resize every image to N x N pixels")
    s.add_argument("--val-fraction", type=float, default=0.1, help="of the non-test images (default: %(default)s)")
    s.add_argument("--test-fraction", type=float, default=0.2, help="(default: %(default)s)")
    s.add_argument("--split-seed", type=int, default=0, help="fixes the split (default: %(default)s)")
    s.add_argument("--workers", type=int, help="decoding processes (default: the cores)")
    _add_config_flags(s, ("group_column", "dicom_window"))
    s.add_argument("--no-progress", action="store_true", help="no progress output")
    s.set_defaults(func=cmd_prepare)

    s = sub.add_parser("evaluate", help="confusion matrix and per-class metrics of a run's model")
    s.add_argument("run")
    s.add_argument("--data", help="another dataset with the same classes (default: the run's own)")
    s.add_argument("--split", default="test", choices=("train", "val", "test"))
    s.add_argument("--positive", help="binary tasks: the positive class (default: the second class)")
    s.add_argument("--threshold", type=float, default=0.5, help="binary tasks: threshold on P(positive)")
    target = s.add_mutually_exclusive_group()
    target.add_argument("--target-sensitivity", type=float, metavar="RATE",
                        help="binary tasks: the threshold reaching this sensitivity on the validation split")
    target.add_argument("--target-specificity", type=float, metavar="RATE",
                        help="binary tasks: the threshold reaching this specificity on the validation split")
    s.add_argument("--calibrate", action="store_true",
                   help="temperature scaling fitted on the validation split; report on the scaled probabilities")
    s.add_argument("--bootstrap", type=int, default=2000, metavar="N",
                   help="resamples for the 95%% confidence intervals (0: none)")
    s.add_argument("--seed", type=int, default=0, help="seeds the bootstrap")
    s.add_argument("--strict", action="store_true", help="stop at an unreadable image instead of skipping it")
    s.add_argument("--device", help="where the model runs, in batches: cpu | cuda | cuda:1 ... (default: the kind "
                                    "the run trained on, if this machine has it)")
    s.add_argument("--by", metavar="COLUMNS",
                   help="manifest columns to audit by, comma separated (e.g. sex,age_band): every group's "
                        "sensitivity, specificity, PPV and NPV with intervals, and the gaps between groups")
    s.add_argument("--per-group-threshold", action="store_true",
                   help="binary, with --by: also the threshold each group would need to reach the target "
                        "(--target-sensitivity / --target-specificity, else the overall sensitivity)")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("probe", help="can the model see a patient attribute? a linear probe on its features")
    s.add_argument("run")
    s.add_argument("--attribute", required=True, help="a column of the run's manifest (e.g. sex)")
    s.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="resamples for the AUC's 95%% interval")
    s.add_argument("--seed", type=int, default=0, help="seeds the image draw and the bootstrap")
    s.add_argument("--max-images", type=int, default=20_000, metavar="N",
                   help="at most N images of each split (a seeded draw; default: %(default)s)")
    s.add_argument("--device", help="where the model runs (default: the kind the run trained on, if here)")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    s.set_defaults(func=cmd_probe)

    s = sub.add_parser("predict", help="top-k classes of image files or folders")
    s.add_argument("run")
    s.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER")
    s.add_argument("--top-k", type=int, default=3)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("augment", help="augmentation tools")
    aug = s.add_subparsers(dest="augment_command", required=True, metavar="SUBCOMMAND")
    s = aug.add_parser("preview", help="a grid of one image under every knob and under your settings")
    s.add_argument("image")
    s.add_argument("--out", default="augment_preview.png", help="PNG to write")
    s.add_argument("--seed", type=int, default=0)
    _add_config_flags(s, only=("augment", *KNOBS))
    s.set_defaults(func=cmd_augment_preview)

    from optik.robustness.attacks import ATTACKS, methods_help
    from optik.robustness.evaluate import eps_help

    s = sub.add_parser("attack", help="robust accuracy of a run's model under an attack, as eps grows")
    s.add_argument("run")
    s.add_argument("--method", default="pgd", type=str.lower, choices=ATTACKS.names(), metavar="METHOD",
                   help=methods_help())
    s.add_argument("--eps", default=None, help=eps_help())
    s.add_argument("--n", type=int, default=1000, help="images of the split to attack (0: all)")
    s.add_argument("--split", default="test", choices=("train", "val", "test"))
    s.add_argument("--steps", type=int, help="iterations (pgd: 10, apgd/strong: 100, cw: 100 Adam steps per "
                                             "constant, 6 constants)")
    s.add_argument("--alpha", type=float, help="pgd step size (default 2.5 * eps / steps)")
    s.add_argument("--restarts", type=int, help="pgd random restarts (worst case per image is kept)")
    s.add_argument("--confidence", type=float, help="cw: kappa, the logit margin a success must reach")
    s.add_argument("--batch-size", type=int, default=500, help="images per pass (bounds memory)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", help="cpu | cuda | cuda:1 ... (default: the kind the run trained on, if this "
                                    "machine has it)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_attack)

    from optik.core.config import GANConfig, VAEConfig

    for kind, schema, what in (("gan", GANConfig, "a DCGAN"), ("vae", VAEConfig, "a convolutional VAE")):
        s = sub.add_parser(kind, help=f"train {what} (`optik {kind} train --help`)")
        g = s.add_subparsers(dest=f"{kind}_command", required=True, metavar="SUBCOMMAND")
        s = g.add_parser("train", help=f"train {what} into a run folder; FID, KID, precision/recall at the end")
        s.add_argument("--config", help="YAML file of config keys; flags override it")
        s.add_argument("--out", help="run folder (default: a new folder under runs/)")
        s.add_argument("--overwrite", action="store_true", help="replace an existing --out")
        s.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last checkpoint")
        s.add_argument("--no-progress", action="store_true", help="no progress bar")
        _add_config_flags(s, schema=schema)
        s.set_defaults(func=cmd_generative_train, kind=kind)

    s = sub.add_parser("sample", help="images from a trained GAN or VAE: a PNG grid or a .npz of uint8 arrays")
    s.add_argument("run")
    s.add_argument("--n", type=int, default=64, help="how many images (default: %(default)s)")
    s.add_argument("--out", default="samples.png",
                   help="a .png grid (default: %(default)s) or a .npz of uint8 arrays N x C x H x W")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--labels", help="conditional GANs: comma-separated class indices (default: balanced)")
    s.add_argument("--temperature", type=float, default=1.0,
                   help="spread of the latent codes around their means (1: as drawn)")
    s.add_argument("--codes", choices=("fitted", "prior"),
                   help="VAE: draw codes from the latent mixture fitted after training (the default when the run "
                        "has one) or from the model's prior")
    s.set_defaults(func=cmd_sample)

    s = sub.add_parser("interpolate", help="paths through a GAN's or VAE's latent space (VAE: between test images)")
    s.add_argument("run")
    s.add_argument("--out", default="interpolation.png", help="the figure (default: %(default)s)")
    s.add_argument("--method", default="slerp", choices=("slerp", "lerp"),
                   help="spherical (the default, for Gaussian codes) or straight-line paths")
    s.add_argument("--rows", type=int, default=8, help="paths, one per row (default: %(default)s)")
    s.add_argument("--steps", type=int, default=10, help="images along each path, ends included (default: %(default)s)")
    s.add_argument("--seed", type=int, default=0, help="picks the end codes (VAE: the test images)")
    s.set_defaults(func=cmd_interpolate)

    s = sub.add_parser("quality", help="FID, KID, precision/recall and class histogram of a GAN / VAE run")
    s.add_argument("run")
    s.add_argument("--n", type=int, default=0, help="test images to compare with, a seeded random subset (0: all)")
    s.add_argument("--features", help="an optik classification run, or inception:PATH (default: the run's)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--codes", choices=("fitted", "prior"), help="VAE: where sample codes come from (see sample)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_quality)

    from optik.interpret_api import METHODS

    s = sub.add_parser("explain", help="what a run's model looks at: Grad-CAM, saliency, feature maps, filters")
    s.add_argument("run")
    s.add_argument("image", nargs="?", help="the image to explain (not needed for --method filters)")
    s.add_argument("--method", default="gradcam", choices=METHODS)
    s.add_argument("--out", help="PNG to write (default: <image>-<method>.png)")
    s.add_argument("--target", help="class to explain, by name or index (default: the predicted class)")
    s.add_argument("--layer", help="layer for gradcam / feature-maps (default: the last spatial map); a wrong "
                                   "name lists the valid ones")
    s.add_argument("--top-k", type=int, default=3)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_explain)

    s = sub.add_parser("report", help="one self-contained report.html of a run: metrics, curves, calibration, "
                                      "Grad-CAM, attacks, samples")
    s.add_argument("run")
    s.add_argument("--out", help="HTML file to write (default: <run>/report.html)")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("serve", help="a local web playground: predict, attack, augment, Grad-CAM (Gradio)")
    s.add_argument("runs", nargs="+", metavar="RUN", help="classification run folders (a dropdown picks one)")
    s.add_argument("--host", default="127.0.0.1", help="interface to bind (default: this machine only)")
    s.add_argument("--port", type=int, default=7860)
    s.add_argument("--max-upload-mb", type=float, default=10.0, help="largest upload accepted")
    s.add_argument("--open", action="store_true", help="open the page in the default browser")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("demo", help="train, evaluate, predict, attack, then train a VAE, on built-in mnist5k "
                                    "(about 3 min on 2 CPU cores)")
    s.add_argument("--out", help="run folder (default: a new folder under runs/)")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_demo)
    return p


def _warning_printer(fallback):
    """optik's own warnings as ``optik: warning: ...`` lines (a user needs no source line); others unchanged."""
    def show(message, category, filename, lineno, file=None, line=None):
        if category.__module__.startswith("optik."):
            print(f"optik: warning: {message}", file=file or sys.stderr)
        else:
            fallback(message, category, filename, lineno, file, line)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("optik: %(message)s"))
    logger = logging.getLogger("optik")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    warnings.filterwarnings("ignore", category=UserWarning, module="lightning")
    try:
        with warnings.catch_warnings():  # restores showwarning afterwards
            warnings.showwarning = _warning_printer(warnings.showwarning)
            args.func(args)
    except OptikError as e:
        print(f"optik {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"optik {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:  # main() may run many times in one process (tests, notebooks): leave no handler behind
        logger.removeHandler(handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
