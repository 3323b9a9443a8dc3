"""`optik` on the command line: parse arguments, call the API, print through :mod:`optik.console`. No logic lives
here, and no default: each command's flags, defaults and types come from the signature of the function it calls
(:func:`optik.core.flags.add_flags`; the help texts are in :mod:`optik.commands`), or from the config dataclass
of the commands that train (:func:`_add_config_flags`)."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import warnings
from typing import Sequence

import optik
from optik import commands, console
from optik import generative_api as gen
from optik.augment.presets import KNOBS
from optik.augment.preview import save_preview
from optik.training.config import TrainConfig
from optik.core.errors import ConfigError, OptikError
from optik.core.flags import add_flags, call_args
from optik.demo import run_demo
from optik.models.zoo import zoo_table
from optik.report import write_report
from optik.serve import serve


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
def _show(args, result, printer) -> None:
    """``result`` as JSON with ``--json``, else through ``printer`` onto a Rich console."""
    console.print_json(result) if args.json else printer(result, console.make_console())


def cmd_datasets(args) -> None:
    console.print_datasets(optik.list_datasets(**call_args(args, optik.list_datasets)), as_json=args.json)


def cmd_models(args) -> None:
    cnns = [m for m in optik.list_models(**call_args(args, optik.list_models)) if m.get("family") != "zoo"]
    zoo = zoo_table(args.pattern)
    if not (cnns or zoo or args.json):
        raise ConfigError(f"no model matches {args.pattern!r}; `optik models` lists them all (a pattern is a "
                          f"shell-style wildcard, e.g. 'resnet*')")
    console.print_models(cnns, zoo, as_json=args.json)


def cmd_train(args) -> None:
    result = optik.train(**call_args(args, optik.train), **_overrides(args))
    if result.model is not None:  # None: a data-parallel worker; rank 0 reports
        console.print_trained(result, console.make_console())


def cmd_prepare(args) -> None:
    out = optik.prepare(**call_args(args, optik.prepare))
    console.print_written("shards", out, f"; train with: optik train --data {out}")


def cmd_evaluate(args) -> None:
    _show(args, optik.evaluate(**call_args(args, optik.evaluate)), console.print_evaluation)


def cmd_probe(args) -> None:
    _show(args, optik.probe(**call_args(args, optik.probe)), console.print_probe)


def cmd_predict(args) -> None:
    from optik.data.folder import SkippedImagesWarning

    with warnings.catch_warnings():  # each unreadable file gets its own line, in order
        warnings.simplefilter("ignore", SkippedImagesWarning)
        results = optik.predict(**call_args(args, optik.predict))
    _show(args, results, console.print_predictions)


def cmd_augment_preview(args) -> None:
    from optik.augment.generator import AugmentConfig
    from optik.augment.presets import make_augment
    from optik.core.config import from_dict

    knobs = {k: getattr(args, k) for k in KNOBS if getattr(args, k) is not None}
    values = from_dict(TrainConfig, {"augment": args.augment or "default", **knobs}, source="arguments")
    cfg = make_augment(values.augment, **{k: getattr(values, k) for k in KNOBS})
    console.print_written("preview", save_preview(**call_args(args, save_preview, cfg=cfg or AugmentConfig())))


def cmd_attack(args) -> None:
    try:
        eps = None if args.eps is None else [float(e) for e in args.eps.split(",")]
    except ValueError:
        raise ConfigError(f"expected --eps as comma-separated numbers, e.g. 0,0.1,0.3, got {args.eps!r}") from None
    options = {k: getattr(args, k) for k in commands.ATTACK_OPTIONS if getattr(args, k) is not None}
    report = optik.attack(**call_args(args, optik.attack, eps=eps, n=args.n or None), **options)
    _show(args, report, console.print_robustness)


def cmd_generative_train(args) -> None:
    train = gen.train_gan if args.kind == "gan" else gen.train_vae
    result = train(**call_args(args, train), **_overrides(args, gen.KINDS[args.kind]))
    console.print_generative_run(result, console.make_console())


def cmd_sample(args) -> None:
    labels = [int(v) for v in args.labels.split(",")] if args.labels else None
    x = gen.sample(**call_args(args, gen.sample, labels=labels))
    console.print_written(f"{len(x)} samples", args.out)


def cmd_interpolate(args) -> None:
    console.print_written("interpolation", gen.interpolate(**call_args(args, gen.interpolate)))


def cmd_quality(args) -> None:
    _show(args, gen.quality(**call_args(args, gen.quality, n=args.n or None)), console.print_quality)


def cmd_explain(args) -> None:
    target = int(args.target) if args.target is not None and args.target.isdigit() else args.target
    r = optik.explain(**call_args(args, optik.explain, target=target))
    console.print_json(r) if args.json else console.print_explanation(r)


def cmd_report(args) -> None:
    path = write_report(**call_args(args, write_report))
    console.print_written("report", path, "  (one self-contained HTML file; open it in any browser)")


def cmd_serve(args) -> None:
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"expected --port in 1-65535, got {args.port}")
    import optik.serve.app  # noqa: F401 - Gradio first: without it, a ConfigError saying how to install it

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"optik serve: warning: --host {args.host} makes the playground reachable from the network, and it "
              "has no login", file=sys.stderr)
    serve(**call_args(args, serve))


def cmd_demo(args) -> None:
    run_demo(**call_args(args, run_demo, console=console.make_console()))


# ------------------------------------------------------------------------------------------------ parser
def _command(sub, name: str, func, handler, *, key: str | None = None, help: str | None = None,  # noqa: A002
             json: str | bool = False, skip: Sequence[str] = (), **parser_kw) -> argparse.ArgumentParser:
    """The sub-parser ``name`` running ``handler``: a flag per parameter of ``func`` with the help texts of
    ``commands.FLAGS[key or name]``, and ``--json`` when asked (a string: its help)."""
    s = sub.add_parser(name, help=help or commands.HELP[name], **parser_kw)
    add_flags(s, func, commands.flags(key or name), skip=skip)
    if json:
        s.add_argument("--json", action="store_true", **({"help": json} if isinstance(json, str) else {}))
    s.set_defaults(func=handler)
    return s


def _train_commands(sub) -> None:
    """train and prepare: flags of the API function, then of the config dataclass."""
    _add_config_flags(_command(sub, "train", optik.train, cmd_train))
    s = _command(sub, "prepare", optik.prepare, cmd_prepare, skip=("progress", *commands.PREPARE_CONFIG_FLAGS))
    _add_config_flags(s, commands.PREPARE_CONFIG_FLAGS)
    add_flags(s, optik.prepare, commands.FLAGS["prepare"], only=("progress",))


def _generative_train_commands(sub) -> None:
    """`optik gan train` and `optik vae train`: flags of the API function, then of the config dataclass."""
    from optik.training.config import GANConfig, VAEConfig

    for kind, schema, what in (("gan", GANConfig, "a DCGAN"), ("vae", VAEConfig, "a convolutional VAE")):
        s = sub.add_parser(kind, help=f"train {what} (`optik {kind} train --help`)")
        g = s.add_subparsers(dest=f"{kind}_command", required=True, metavar="SUBCOMMAND")
        s = _command(g, "train", gen.train_gan if kind == "gan" else gen.train_vae, cmd_generative_train,
                     key="generative train",
                     help=f"train {what} into a run folder; FID, KID, precision/recall at the end")
        _add_config_flags(s, schema=schema)
        s.set_defaults(kind=kind)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="optik", description="Classify and evaluate images, attack and defend models, "
                                                          "train GANs and VAEs, with PyTorch.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _command(sub, "datasets", optik.list_datasets, cmd_datasets, json=True)
    _command(sub, "models", optik.list_models, cmd_models, json=True, skip=("input_size",),
             description=commands.MODELS_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    _train_commands(sub)
    _command(sub, "evaluate", optik.evaluate, cmd_evaluate, json="print the report as JSON")
    _command(sub, "probe", optik.probe, cmd_probe, json="print the result as JSON")
    _command(sub, "predict", optik.predict, cmd_predict, json=True)
    augment = sub.add_parser("augment", help=commands.HELP["augment"])
    augment = augment.add_subparsers(dest="augment_command", required=True, metavar="SUBCOMMAND")
    _add_config_flags(_command(augment, "preview", save_preview, cmd_augment_preview, skip=("cfg",)),
                      only=("augment", *KNOBS))
    _command(sub, "attack", optik.attack, cmd_attack, json=True)
    _generative_train_commands(sub)
    _command(sub, "sample", gen.sample, cmd_sample)
    _command(sub, "interpolate", gen.interpolate, cmd_interpolate)
    _command(sub, "quality", gen.quality, cmd_quality, json=True)
    _command(sub, "explain", optik.explain, cmd_explain, json=True)
    _command(sub, "report", write_report, cmd_report, skip=("examples",))
    _command(sub, "serve", serve, cmd_serve, skip=("top_k",))
    _command(sub, "demo", run_demo, cmd_demo, skip=("console",))
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
