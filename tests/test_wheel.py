"""The built wheel carries its templates: a non-editable install renders from anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
import warnings
from pathlib import Path

import pytest

from tests.support.items import worked_example

REPO = Path(__file__).resolve().parent.parent
SLOW = 20.0  # seconds: a step this slow is named in the run's warnings summary


def step(argv: list[str], *, check: bool, timeout: float, env: dict[str, str] | None = None,
         cwd: Path | None = None, capture_output: bool = False,
         ) -> subprocess.CompletedProcess[str]:
    """subprocess.run, timed: in some full runs this test took 150 s, against 3-5 s alone,
    and a warning says which step it was."""
    started = time.monotonic()
    done = subprocess.run(argv, check=check, timeout=timeout, env=env, cwd=cwd,
                          capture_output=capture_output, text=True)
    took = time.monotonic() - started
    if took > SLOW:
        warnings.warn(f"test_wheel: {argv[1:4]} took {took:.1f} s", stacklevel=2)
    return done


# Three pip runs on a loaded 2-core machine: the budget is theirs, each with its own deadline.
@pytest.mark.timeout(300)
def test_installed_wheel_renders(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    step([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "-q", "-w", str(dist), str(REPO)], check=True, timeout=120)
    wheel = next(dist.glob("reconfigure-*.whl"))
    # A venv without pip (ensurepip is the slow part), filled by this environment's pip.
    venv = tmp_path / "venv"
    step([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    step([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"),
          "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, timeout=120)
    scan = tmp_path / "scan.json"
    scan.write_text(json.dumps({"Items": worked_example()}))
    # Dependencies come from the test environment; reconfigure itself only from the wheel
    # (the editable install's .pth is not processed for a PYTHONPATH entry).
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"],
           "CERT_DOMAIN": "cabal.example"}
    probe = step(
        [str(venv / "bin/python"), "-c",
         "import reconfigure.render as r; print(r.__file__);"
         " print(r.environment().get_template('access.j2').filename)"],
        env=env, cwd=tmp_path, capture_output=True, check=True, timeout=60)
    assert str(venv) in probe.stdout and str(REPO) not in probe.stdout
    result = step(
        [str(venv / "bin/reconfigure"), "render", "--tier", "imap", "--scan-file", str(scan),
         "--root", str(tmp_path / "out")],
        env=env, cwd=tmp_path, capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    virtusertable = (tmp_path / "out/etc/mail/virtusertable").read_text()
    assert virtusertable.splitlines()[1] == "shop@acme.example.com\talice_carol"


def test_a_checkout_finds_the_template_sources_through_the_package() -> None:
    """One copy of the templates: the package's templates folder is a link to them."""
    link = REPO / "reconfigure" / "templates"
    assert link.is_symlink() and link.resolve() == REPO / "templates"
    from reconfigure.render import environment

    filename = environment().get_template("access.j2").filename
    assert filename is not None and Path(filename).resolve() == REPO / "templates/access.j2"
