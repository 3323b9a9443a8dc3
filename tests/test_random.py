"""Random draws: the same numbers as the plain PyTorch calls on the CPU, and drawn where the generator lives, so
that a CPU generator can drive work on any device (PyTorch refuses a CPU generator for a CUDA tensor)."""
import ast
from pathlib import Path

import pytest
import torch

from optik.core import seed as random

PACKAGE = Path(__file__).resolve().parents[1] / "optik"
# torch functions and Tensor methods that draw from a generator
DRAWS = {"rand", "randn", "randint", "randperm", "multinomial", "normal", "bernoulli", "poisson", "rand_like",
         "randn_like", "randint_like", "uniform_", "normal_", "random_", "bernoulli_", "exponential_",
         "geometric_", "cauchy_", "log_normal_"}


def test_helpers_give_the_plain_calls_numbers_on_the_cpu():
    def g():
        return torch.Generator().manual_seed(5)

    like = torch.empty(4, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    assert torch.equal(random.uniform((3, 5), -2, 2, generator=g()), torch.empty(3, 5).uniform_(-2, 2, generator=g()))
    assert torch.equal(random.uniform((7,), generator=g()), torch.rand(7, generator=g()))
    assert torch.equal(random.normal((2, 6), generator=g()), torch.randn(2, 6, generator=g()))
    assert torch.equal(random.uniform_like(like, -1, 1, generator=g()),
                       torch.empty_like(like).uniform_(-1, 1, generator=g()))  # the channels_last fill order too
    assert random.uniform_like(like, generator=g()).is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(random.normal_like(like, generator=g()), torch.empty_like(like).normal_(generator=g()))
    assert torch.equal(random.randint(9, (20,), generator=g()), torch.randint(9, (20,), generator=g()))
    assert torch.equal(random.randperm(30, generator=g()), torch.randperm(30, generator=g()))
    w = torch.tensor([0.1, 0.5, 0.4])
    assert torch.equal(random.multinomial(w, 12, generator=g()), torch.multinomial(w, 12, True, generator=g()))


def test_draws_happen_on_the_generators_device_and_land_on_the_requested_one():
    """A CPU generator with a tensor elsewhere ('meta' stands in for a GPU here): drawn on the CPU, then moved."""
    g = torch.Generator().manual_seed(0)
    meta = torch.empty(2, 3, device="meta")
    for out in (random.uniform((2, 3), generator=g, device="meta"), random.normal((2, 3), generator=g, device="meta"),
                random.uniform_like(meta, generator=g), random.normal_like(meta, generator=g),
                random.randint(4, (5,), generator=g, device="meta"), random.randperm(5, generator=g, device="meta")):
        assert out.device.type == "meta"
    assert random.uniform((3,), generator=None, device="cpu").device.type == "cpu"  # no generator: the global one


def _bypasses(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call) or not any(k.arg == "generator" for k in node.keywords):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
        if name in DRAWS and not (isinstance(f, ast.Attribute) and getattr(f.value, "id", "") == "random"):
            found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_no_draw_in_the_package_bypasses_the_device_safe_helpers():
    """Every torch draw that takes a generator goes through optik.core.seed, which draws on the generator's
    device: a direct ``torch.randn(..., generator=g, device=x.device)`` fails on a GPU whenever ``g`` is the
    training task's CPU generator (adversarial training did, at its first step)."""
    files = [p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "core" / "seed.py"]
    assert len(files) > 50
    assert [b for p in files for b in _bypasses(p)] == []


def test_the_audit_finds_a_bypass(tmp_path):
    bad = tmp_path / "probe.py"
    bad.write_text("import torch\ndef f(x, g):\n    a = torch.empty_like(x).uniform_(0, 1, generator=g)\n"
                   "    return a + torch.randn(x.shape, generator=g, device=x.device)\n")
    assert len(_bypasses(bad, tmp_path)) == 2
