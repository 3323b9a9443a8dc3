"""What optik prints for people: Rich tables and lines for reports, and JSON for machines. The CLI parses and
dispatches, the demo runs the API; both print through here, and this module imports neither."""
from __future__ import annotations

import json
import sys

from optik.evaluation.bootstrap import format_interval


def make_console():
    """A Rich console for stdout: no highlighting; tables as wide as they need in logs and pipes."""
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)  # logs and pipes get wide tables


def print_json(value) -> None:
    """``value`` as indented JSON (``--json``)."""
    print(json.dumps(value, indent=2))


def print_written(what: str, path, note: str = "") -> None:
    """One line: what a command wrote, and where."""
    print(f"{what} written to {path}{note}")


# ------------------------------------------------------------------------------------------------ listings
def print_rows(rows: list[dict], columns: dict[str, str], *, title: str, as_json: bool) -> None:
    """Rows as JSON for machines, or a Rich table of ``columns`` (key -> header) for people."""
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(*columns.values(), title=title)
    for r in rows:
        table.add_row(*(str(r.get(k, "")) for k in columns))
    make_console().print(table)


def print_datasets(rows: list[dict], *, as_json: bool) -> None:
    """``optik datasets``: name, offline or download, summary."""
    if as_json:
        return print_json(rows)
    print_rows([{**r, "offline": "yes" if r["offline"] else "download"} for r in rows],
               {"name": "name", "offline": "offline", "summary": "summary"},
               title="datasets (or pass a folder of class folders / a .csv manifest)", as_json=False)


def print_models(cnns: list[dict], zoo: list[dict], *, as_json: bool) -> None:
    """``optik models``: the CNNs, then the zoo with its Keras reference figures and timm's weights."""
    if as_json:
        return print_json({"cnn": cnns, "zoo": zoo})
    if cnns:
        print_rows(cnns, {"name": "name", "summary": "summary", "spec": "spec"},
                   title="CNNs (or pass a CNN spec string; see `optik models --help`)", as_json=False)
    if zoo:
        rows = [{**r, "params_m": r["params_m"] if r["params_m"] is not None else "-",
                 "top": f"{r['keras_top1']} / {r['keras_top5']}",
                 "pretrained": (f"{len(r['pretrained'])}: {r['pretrained'][0]}" if r["pretrained"]
                                else r.get("note", "none")),
                 "weights_top1": (f"{r['weights_top1']:.1f} @ {r['weights_eval_size']}" if r["weights_top1"]
                                  else "-")} for r in zoo]
        print_rows(rows, {"keras": "Keras name", "timm": "timm", "params_m": "params (M)",
                          "keras_params_m": "Keras params (M)", "keras_depth": "Keras depth",
                          "input_size": "input", "top": "Keras top-1 / top-5 (%)",
                          "pretrained": "timm weights (count: default)", "weights_top1": "default top-1 @ px"},
                   title="model zoo (any other timm name works too; params differ from Keras by counting "
                         "conventions, see docs/zoo.md)", as_json=False)


# ------------------------------------------------------------------------------------------------ classifiers
def print_trained(result, con) -> None:
    """``optik train``: the test report, and the run folder."""
    print_report(result.metrics, con)
    con.print(f"run folder: [bold]{result.run_dir}[/]")


def print_evaluation(report: dict, con) -> None:
    """``optik evaluate``: the report, and the subgroup audit when there is one."""
    print_report(report, con)
    if "subgroups" in report:
        print_subgroups(report["subgroups"], con)


def print_report(report: dict, con) -> None:
    """An evaluation report: the per-class table, accuracy, intervals, the binary operating point, calibration,
    warnings."""
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
        ci = report["intervals"]
        con.print(f"accuracy {ci['level']:.0%} CI {format_interval(ci['accuracy'])} ({ci['method']}, "
                  f"{ci['n_boot']} resamples, seed {ci['seed']})")
    if "binary" in report:
        print_binary(report["binary"], con)
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


def print_binary(b: dict, con) -> None:
    """A binary task's operating point: threshold, rates with intervals, errors, ROC AUC."""
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


def print_subgroups(sub: dict, con) -> None:
    """A subgroup audit (``metrics.json`` ``subgroups``): per column, each group's rates for the positive class (or
    each class) with intervals, then the gaps and the flags."""
    from rich.table import Table

    from optik.evaluation.subgroups import GROUP_TABLE, group_rows, shown_classes

    con.print(f"[bold]subgroups[/]: {sub['note']}")
    for column in sub["columns"]:
        report, shown = sub[column], shown_classes(sub, column)
        t = Table(*GROUP_TABLE, title=f"by {column}")
        for row in group_rows(sub, column):
            t.add_row(*row)
        con.print(t)
        for c in shown:
            gap = report["gaps"][c]
            parts = [f"{k} {gap[k]['difference']:.3f}" + (f" ({gap[k]['highest']} vs {gap[k]['lowest']})"
                                                           if gap[k]["difference"] else " (all equal)")
                     for k in ("sensitivity", "specificity", "ppv") if gap[k]["difference"] is not None]
            eod = gap.get("equalized_odds_difference")
            con.print(f"  gaps for {c!r}: " + ("; ".join(parts) or "none defined")
                      + (f"; equalized-odds difference {eod:.3f}" if eod is not None else ""))
        for flag in report.get("flags", []):
            con.print(f"  [yellow]flag:[/] {flag}")
    for column, needed in sub.get("thresholds_needed", {}).items():
        target = ", ".join(f"{k} {v:.3f}" for k, v in needed["target"].items())
        con.print(f"  threshold each {column} group would need for {target}: "
                  + "; ".join(f"{g} {'n/a' if r['threshold'] is None else format(r['threshold'], '.4g')}"
                              for g, r in needed["groups"].items()))


def print_probe(result: dict, con) -> None:
    """An attribute probe: the AUC on the model's features and on raw pixels, and the verdict."""
    from rich.table import Table

    t = Table("probe on", "AUC", "95 % interval", "dimensions",
              title=f"can the model see {result['attribute']!r}? ({result['n_train']} train / {result['n_test']} "
                    f"test images; values {', '.join(map(str, result['values']))})")
    for key, name in (("features", "model features"), ("pixels", "raw pixels")):
        r = result[key]
        t.add_row(name, f"{r['auc']:.3f}", format_interval(r.get("interval")), str(r.get("dim", "")))
    con.print(t)
    con.print(("[bold red]" if result.get("shortcut") else "[bold]") + result["verdict"] + "[/]")


def print_predictions(results: list[dict], con) -> None:
    """``optik predict``: one line per file, the top classes with their probabilities, or why it was unreadable."""
    for r in results:
        if "error" in r:  # the error names the file
            con.print(f"[red]{r['error']}[/]", highlight=False)
        else:
            tops = "  ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top_k"])
            con.print(f"{r['path']}: {tops}")


def print_explanation(r: dict) -> None:
    """``optik explain``: the prediction, and the figure written."""
    if r["prediction"]:
        print("prediction: " + "  ".join(f"{t['class']} {t['probability']:.3f}" for t in r["prediction"]))
    details = ", ".join(f"{k} {r[k]}" for k in ("layer", "target") if r.get(k) is not None)
    print_written(f"{r['method']}{f' ({details})' if details else ''}", r["out"])


# ------------------------------------------------------------------------------------------------ attacks
def print_robustness(report: dict, con) -> None:
    """A robustness curve (``optik attack``, ``optik.attack``): robust accuracy and norms per eps, then notes."""
    from rich.table import Table

    t = Table("L2 threshold" if "minimal" in report else "eps", "robust acc", "success", "L2 mean", "L2 median",
              "Linf mean", "P(true) clean", "P(true) adv",
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


# ------------------------------------------------------------------------------------------------ generative
def print_generative_run(result, con) -> None:
    """``optik gan train`` / ``optik vae train``: sample quality, the run folder, and how to sample from it."""
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


__all__ = ["make_console", "print_binary", "print_datasets", "print_evaluation", "print_explanation",
           "print_generative_run", "print_json", "print_models", "print_predictions", "print_probe", "print_quality",
           "print_report", "print_robustness", "print_rows", "print_subgroups", "print_trained", "print_written"]
