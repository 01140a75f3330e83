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


def test_readme_stays_short():
    """Details go to docs/, a page per topic; the README is what a new user reads first."""
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= 300, f"README.md has {n} lines; move details to a page under docs/"


def _relative_links(md: Path) -> list[str]:
    """Targets of markdown links and images in md, outside code blocks, that are not URLs or in-page anchors."""
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def _anchors(md: Path) -> set[str]:
    """The #fragments GitHub gives md's headings: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
    out: set[str] = set()
    for heading in re.findall(r"^#+\s+(.*?)\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = sum(1 for a in out if a == slug or re.fullmatch(re.escape(slug) + r"-\d+", a))
        out.add(f"{slug}-{n}" if n else slug)
    return out


def _link_targets(md: Path) -> list[str]:
    return _relative_links(md) + [md.name + t for t in re.findall(r"\]\((#[^)\s]+)\)", md.read_text())]


def test_every_relative_link_in_the_docs_points_to_a_file():
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for md in pages:
        for target in _link_targets(md):
            file, _, anchor = target.partition("#")
            path = (md.parent / file).resolve()
            if not path.exists() or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
                broken.append(f"{md.relative_to(ROOT)}: {target}")
    assert not broken, "links to missing files or headings:\n" + "\n".join(broken)


def test_heading_anchors_follow_github():
    page = ROOT / "docs" / "small-objects.md"
    assert "picking-tiling-and-slicing-from-the-data---recipe-auto" in _anchors(page)
    assert "the-literatures-blocks-on-the-anchor-head" in _anchors(page)


def test_the_link_check_sees_links():
    """The checker finds links (so an empty result above means the links exist, not that none were read)."""
    readme_links = _relative_links(ROOT / "README.md")
    assert "docs/results.md" in readme_links and "docs/index.md" in readme_links
    assert _relative_links(ROOT / "docs" / "index.md")


def test_every_docs_page_is_in_the_index():
    index = set(_relative_links(ROOT / "docs" / "index.md"))
    missing = [p.name for p in (ROOT / "docs").glob("*.md") if p.name != "index.md" and p.name not in index]
    assert not missing, f"docs/index.md does not link {missing}"


def test_readme_results_table_is_the_results_page_s():
    """The headline table's rows are the generated page's rows, so its figures cannot drift from the json."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Results", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert len(rows) >= 3, rows
    page = (ROOT / "docs" / "results.md").read_text().splitlines()
    assert all(r in page for r in rows), [r for r in rows if r not in page]
