"""What the CLI prints: Rich tables and lines for reports (the CLI parses and dispatches; this module only
prints, and imports nothing from it)."""
from __future__ import annotations

from optik.evaluation.bootstrap import format_interval


def _rate(v, ci: dict | None = None) -> str:
    return "n/a" if v is None else f"{v:.3f} {format_interval(ci)}".strip()


def print_subgroups(sub: dict, con) -> None:
    """A subgroup audit (``metrics.json`` ``subgroups``): per column, each group's rates for the positive class (or
    each class) with intervals, then the gaps and the flags."""
    from rich.table import Table

    from optik.evaluation.subgroups import group_names

    con.print(f"[bold]subgroups[/]: {sub['note']}")
    for column in sub["columns"]:
        report = sub[column]
        shown = [sub["positive"]] if "positive" in sub else list(report["gaps"])
        t = Table("group", "class", "n", "positives", "sensitivity", "specificity", "PPV", "NPV",
                  title=f"by {column}")
        for g in group_names(report):
            r = report[g]
            ci = (r.get("intervals") or {}).get("per_class", {})
            for c in shown:
                m, i = r["per_class"][c], ci.get(c, {})
                t.add_row(g, c, str(r["n"]), str(m["support"]), _rate(m["sensitivity"], i.get("sensitivity")),
                          _rate(m["specificity"], i.get("specificity")), _rate(m["precision"], i.get("precision")),
                          _rate(m["npv"], i.get("npv")))
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


__all__ = ["print_probe", "print_subgroups"]
