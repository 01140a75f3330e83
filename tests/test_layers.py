"""The package layering written in docs/layout.md ("## Layers") holds for every import in utils/ and models/,
imports inside functions and import_module('...') calls included: nothing imports from a higher layer."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def read_layers(doc: Path) -> dict[str, int]:
    """{unit: layer number} from the numbered list under '## Layers' (units in backticks)."""
    text = doc.read_text().split("## Layers", 1)[1].split("\n## ", 1)[0]
    layers: dict[str, int] = {}
    for line in text.splitlines():
        if m := re.match(r"(\d+)\. (.*)", line):
            for name in re.findall(r"`([\w.]+)`", m.group(2).split(":")[0]):
                assert name not in layers, f"{doc}: {name} is in two layers"
                layers[name] = int(m.group(1))
    return layers


def unit(module: str) -> str | None:
    """The layer unit of a module name: models, utils (the package), utils.<package> or utils.<module>."""
    parts = module.split(".")
    if parts[0] == "models":
        return "models"
    if parts[0] == "utils":
        return "utils." + parts[1] if len(parts) > 1 else "utils"
    return None


def imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, module) of every project import in one file, wherever it sits."""
    pkg = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this file's package
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.append((node.lineno, mod))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in
              ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            found.append((node.lineno, str(node.args[0].value)))
    return sorted(found)


def back_arrows(root: Path, layers: dict[str, int]) -> list[str]:
    """'file:line: a (layer i) imports b (layer j > i)' for every upward import; unknown units are errors too."""
    bad = []
    for path in sorted(p for d in ("utils", "models") for p in (root / d).rglob("*.py")):
        rel = path.relative_to(root)
        src = unit(".".join(rel.with_suffix("").parts).removesuffix(".__init__"))
        if src not in layers:
            bad.append(f"{rel}: {src} is in no layer of docs/layout.md")
            continue
        for line, mod in imports(path, root):
            dst = unit(mod)
            if dst is None or dst == src:
                continue
            if dst not in layers:
                bad.append(f"{rel}:{line}: imports {mod}, whose {dst} is in no layer of docs/layout.md")
            elif layers[dst] > layers[src]:
                bad.append(f"{rel}:{line}: {src} (layer {layers[src]}) imports {mod} from the higher "
                           f"{dst} (layer {layers[dst]})")
    return bad


def test_docs_list_the_layers():
    layers = read_layers(ROOT / "docs" / "layout.md")
    assert layers["utils.boxes"] < layers["models"] < layers["utils.assign"] < layers["utils.checkpoints"]
    assert layers["utils.checkpoints"] < layers["utils.inference"] < layers["utils.eval"] < layers["utils.engine"]


def test_no_import_from_a_higher_layer():
    bad = back_arrows(ROOT, read_layers(ROOT / "docs" / "layout.md"))
    assert not bad, "imports against the layering of docs/layout.md:\n" + "\n".join(bad)


def test_the_scan_sees_back_arrows_in_every_form(tmp_path):
    layers = {"utils": 1, "utils.boxes": 1, "models": 2, "utils.engine": 3}
    (tmp_path / "utils" / "engine").mkdir(parents=True)
    (tmp_path / "models").mkdir()
    (tmp_path / "utils" / "__init__.py").write_text("")
    (tmp_path / "utils" / "boxes.py").write_text("import math\n\n\ndef f():\n    from models.yolo import Model\n")
    (tmp_path / "utils" / "engine" / "run.py").write_text("from . import x\nfrom models import yolo\n")
    (tmp_path / "models" / "yolo.py").write_text("import importlib\nimport utils.boxes\n"
                                                 "from ..utils.engine import run\n"
                                                 "importlib.import_module('utils.engine.run')\n"
                                                 "from utils.plots import y\n")
    bad = back_arrows(tmp_path, layers)
    assert bad == [
        "models/yolo.py:3: models (layer 2) imports utils.engine from the higher utils.engine (layer 3)",
        "models/yolo.py:4: models (layer 2) imports utils.engine.run from the higher utils.engine (layer 3)",
        "models/yolo.py:5: imports utils.plots, whose utils.plots is in no layer of docs/layout.md",
        "utils/boxes.py:5: utils.boxes (layer 1) imports models.yolo from the higher models (layer 2)",
    ], bad
