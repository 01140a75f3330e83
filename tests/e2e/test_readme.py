"""The README's quick-start commands are the ones CI runs, in a venv of its own, against the lock."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", readme, re.S).group(1)
    return [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]


def _ci_lines() -> list[str]:
    return [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]


def test_ci_runs_the_readme_commands():
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    install_and_train, test = cmds
    install = install_and_train.split("&&")[0].strip()
    assert install_and_train.endswith("python train.py")
    ci = _ci_lines()
    assert install in ci, f"CI does not run the README's install command {install!r}"
    assert test in ci, f"CI does not run the README's test command {test!r}"
    # both installs go through the lock, so CI and a new user get the set CI tested
    assert all("-c requirements-lock.txt" in c for c in (install, test))


def test_ci_builds_a_fresh_venv_before_installing():
    ci = _ci_lines()
    venv = next(i for i, ln in enumerate(ci) if re.match(r"python3? -m venv --clear (\S+)$", ln))
    path = ci[venv].split()[-1]
    activate = ci.index(f". {path}/bin/activate")
    first_pip = next(i for i, ln in enumerate(ci) if ln.startswith("pip "))
    assert venv < activate < first_pip
    assert f"{path}/" in (ROOT / ".gitignore").read_text().splitlines()


def _names(req_file: Path) -> set[str]:
    """Package names a requirements file asks for, following -r includes."""
    out: set[str] = set()
    for ln in req_file.read_text().splitlines():
        ln = ln.split("#")[0].strip()
        if ln.startswith("-r"):
            out |= _names(req_file.parent / ln[2:].strip())
        elif ln:
            out.add(re.split(r"[<>=!~\[ ;]", ln, maxsplit=1)[0].lower().replace("_", "-"))
    return out


def test_every_requirement_is_pinned_in_the_lock():
    pins = {}
    for ln in (ROOT / "requirements-lock.txt").read_text().splitlines():
        if ln.strip() and not ln.startswith("#"):
            name, sep, version = ln.partition("==")
            assert sep and version.strip(), f"requirements-lock.txt: {ln!r} is not NAME==VERSION"
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    missing = _names(ROOT / "requirements-dev.txt") - set(pins)
    assert not missing, f"requirements-lock.txt lacks pins for {sorted(missing)}"
    # exact pins in requirements.txt (the torch pair: other pairs fail to load) must agree with the lock
    exact = re.findall(r"^([\w.-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert exact and all(pins[n.lower()] == v for n, v in exact), exact
