"""What an installed (not editable) byoa carries: the package as setuptools builds it for
a wheel holds the example pool `byoa demo` runs, and loads it from there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
BUILD = "from setuptools import setup; setup()"


def test_the_built_package_carries_the_example_pool_the_demo_loads(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    subprocess.run(  # build_py: the files a wheel is made of, package data included
        [sys.executable, "-c", BUILD, "-q", "build_py", "--build-lib", str(lib)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    shipped = lib / "router" / "examples" / "accounts.example.toml"
    assert shipped.read_text() == (ROOT / "config" / "accounts.example.toml").read_text()
    away = tmp_path / "elsewhere"  # no config/ here: what the demo loads is the package's
    away.mkdir()
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import router, router.demo as d; "
            "print(router.__file__); print(sorted({a.owner for a in d.example_accounts()}))",
        ],
        cwd=away,
        env={**os.environ, "PYTHONPATH": str(lib)},
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    where, owners = loaded.stdout.splitlines()
    assert where.startswith(str(lib))
    assert owners == "['alice', 'bob', 'carol', 'dave']"
