"""``--ray`` and ``--ray-cpu-actors`` (issue 30): parsed and checked with one-line messages; no Ray import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modules.flags import FlagError, parse_flags

REPO = Path(__file__).resolve().parent.parent


def test_ray_flags_are_parsed() -> None:
    flags = parse_flags(["--ray", "auto", "--ray-cpu-actors", "2"])
    assert (flags.ray, flags.ray_cpu_actors) == ("auto", 2)
    assert parse_flags(["--ray", "ray://head:10001"]).ray == "ray://head:10001"
    plain = parse_flags([])
    assert (plain.ray, plain.ray_cpu_actors) == (None, None)


@pytest.mark.parametrize("argv, message", [
    (["--ray-cpu-actors", "2"], "--ray-cpu-actors needs --ray"),
    (["--ray", " "], "--ray expects 'auto' or a Ray cluster's address"),
    (["--ray", "auto", "--ray-cpu-actors", "0"], "--ray-cpu-actors"),
])
def test_bad_ray_flags_say_why(argv: list[str], message: str) -> None:
    with pytest.raises(FlagError, match=message):
        parse_flags(argv)


def test_the_distributed_package_imports_no_ray_until_it_starts_actors() -> None:
    code = ("import sys, modules.distributed.dispatch, modules.distributed.status, modules.distributed.ray_workers, "
            "modules.api.cluster_routes; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
