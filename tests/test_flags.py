"""Flags from signatures (optik.core.flags), and the CLI built with them: every flag's default is the function's."""
import argparse
import inspect

import pytest

import optik
from optik import generative_api as gen
from optik.augment.preview import save_preview
from optik.cli import build_parser
from optik.core.flags import add_flags, call_args, parameters
from optik.demo import run_demo
from optik.report import write_report
from optik.serve import serve


def _f(run, image=None, *, n: int = 3, rate: float | None = None, out: str, calibrate: bool = False,
       progress: bool = True, n_boot: int = 2000, low: float | None = None, high: float | None = None, **options):
    return locals()


def _parser(spec=None, **kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_flags(p, _f, spec, **kw)
    return p


def test_flags_take_kind_type_and_default_from_the_signature():
    args = _parser().parse_args(["r", "--out", "o.png"])
    assert call_args(args, _f) == {"run": "r", "image": None, "n": 3, "rate": None, "out": "o.png",
                                   "calibrate": False, "progress": True, "n_boot": 2000, "low": None, "high": None}
    args = _parser().parse_args(["r", "img", "--out", "o", "--n", "5", "--rate", "0.5", "--calibrate",
                                 "--no-progress", "--n-boot", "7"])
    assert (args.image, args.n, args.rate, args.calibrate, args.progress, args.n_boot) == ("img", 5, 0.5, True,
                                                                                           False, 7)
    with pytest.raises(SystemExit):  # a keyword-only parameter without a default is a required flag
        _parser().parse_args(["r"])


def test_the_spec_renames_orders_groups_and_adds_kwargs_options():
    p = _parser({"n_boot": {"flag": "--bootstrap", "metavar": "N", "help": "resamples"}, "out": {"default": "x"},
                 "low": {"group": "g"}, "high": {"group": "g"}, "steps": {"kwargs": True, "type": int}},
                skip=("rate",))
    flags = [a.option_strings[0] for a in p._actions if a.option_strings][1:]
    assert flags == ["--bootstrap", "--out", "--low", "--high", "--steps", "--n", "--calibrate", "--no-progress"]
    args = p.parse_args(["r", "--bootstrap", "9", "--steps", "4"])
    assert args.n_boot == 9 and args.out == "x" and args.steps == 4 and "steps" not in call_args(args, _f)
    assert "rate" not in call_args(args, _f)  # skipped: the function's default applies
    with pytest.raises(SystemExit):
        p.parse_args(["r", "--low", "1", "--high", "2"])
    assert call_args(args, _f, n=None)["n"] is None


def test_a_spec_name_that_is_no_parameter_fails_loudly():
    with pytest.raises(TypeError, match="'nope'"):
        _parser({"nope": "help"})
    with pytest.raises(TypeError, match="'steps'"):  # an option for **kwargs must say so
        _parser({"steps": {"type": int}})


# Every sub-command and the function whose signature its flags come from; the defaults the CLI sets itself (files
# it writes where the function writes none, or needs a name).
COMMANDS = {("datasets",): optik.list_datasets, ("models",): optik.list_models, ("train",): optik.train,
            ("prepare",): optik.prepare, ("evaluate",): optik.evaluate, ("probe",): optik.probe,
            ("predict",): optik.predict, ("augment", "preview"): save_preview, ("attack",): optik.attack,
            ("gan", "train"): gen.train_gan, ("vae", "train"): gen.train_vae, ("sample",): gen.sample,
            ("interpolate",): gen.interpolate, ("quality",): gen.quality, ("explain",): optik.explain,
            ("report",): write_report, ("serve",): serve, ("demo",): run_demo}
CLI_DEFAULTS = {("sample",): {"out"}, ("interpolate",): {"out"}, ("augment", "preview"): {"out"}}


def _subparsers(parser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield path + (name,), sub
                yield from _subparsers(sub, path + (name,))


def test_every_flag_defaults_to_its_functions_default():
    seen = set()
    for path, sub in _subparsers(build_parser()):
        if path not in COMMANDS:
            continue
        seen.add(path)
        params = parameters(COMMANDS[path])
        for action in sub._actions:
            p = params.get(action.dest)
            if p is None or p.default is inspect.Parameter.empty or action.dest in CLI_DEFAULTS.get(path, ()):
                continue
            assert action.default == p.default, f"optik {' '.join(path)} {action.option_strings}: {action.default!r}"
    assert seen == set(COMMANDS)

