"""The README's quick-start commands are the ones CI runs."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", readme, re.S).group(1)
    cmds = [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(cmds) == 2, cmds
    install_and_train, test = cmds
    install = install_and_train.split("&&")[0].strip()
    assert install_and_train.endswith("python train.py")
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert install in ci, f"CI does not run the README's install command {install!r}"
    assert test in ci, f"CI does not run the README's test command {test!r}"
