"""The results page, docs/results.md, generated from the measurement files in benchmarks/results/*.json.

    python -m benchmarks.results_page            # (re)write docs/results.md
    python -m benchmarks.results_page --check    # exit 1 when docs/results.md is not what the files give

Every number on the page is read from a file here, never typed in. The files users read most get their own
tables (the peers at equal compute on deeppcb and aerial-cars, the ablations); every other file, a new one
included, gets a generic section: its text fields as prose, its command as a code block, its numbers as tables.
"""
from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.ablation import table as ablation_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "results.md"
COMMAND = "python -m benchmarks.results_page"
TEXT_KEYS = ("what", "how", "note", "notes", "why", "machine", "device")  # prose, not table cells
CMD_KEYS = ("command", "cmd")
FLOPS = "peer-flops-320.json"  # the peers' deployed size at deeppcb's 320 px, 6 classes


def cell(v: Any) -> str:
    """A value as a table cell: floats to 4 significant digits, pycocotools' -1 (undefined AP) as a dash."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return "–" if v == -1.0 else f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(cell(x) for x in v)
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|---" * len(header) + "|",
            *("| " + " | ".join(cell(c) for c in r) + " |" for r in rows)]


def scalar(v: Any) -> bool:
    return not isinstance(v, (dict, list)) or (isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v))


def flat(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: a row's nested numbers as columns."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        elif scalar(v):
            out[f"{prefix}{k}"] = v
    return out


def rows_table(rows: dict[str, dict], key: str = "") -> list[str]:
    """One row per entry, one column per (flattened) field that any entry has."""
    flats = {name: flat(r) for name, r in rows.items()}
    cols = list(dict.fromkeys(c for f in flats.values() for c in f))
    return md_table([key, *cols], [[name, *(f.get(c, "") for c in cols)] for name, f in flats.items()])


def _runs(items: list[dict]) -> bool:
    """Whole runs, each with its own command, rather than the rows of one table (whose nested lists drop out)."""
    return any(k in x for x in items for k in CMD_KEYS)


def _flat_dict(v: Any) -> bool:
    return isinstance(v, dict) and bool(v) and all(scalar(y) for y in v.values())


def generic(d: Any, level: int = 3) -> list[str]:
    """Prose for the text fields, a code block for the command, tables for the numbers, then nested parts."""
    h = "#" * level
    if isinstance(d, list):
        if d and all(isinstance(x, dict) for x in d):
            if not _runs(d):
                return rows_table({str(i): x for i, x in enumerate(d)}, "#")
            return [line for i, x in enumerate(d) for line in (f"{h} {i}", "", *generic(x, min(level + 1, 6)), "")]
        return [cell(d)]
    out: list[str] = []
    for k in TEXT_KEYS:
        if isinstance(d.get(k), str):
            out += [f"*{k}:* {d[k]}", ""]
    for k in CMD_KEYS:
        if isinstance(d.get(k), str):
            out += ["```bash", d[k], "```", ""]
    rest = {k: v for k, v in d.items() if not (isinstance(v, str) and k in (*TEXT_KEYS, *CMD_KEYS))}
    scalars = {k: v for k, v in rest.items() if scalar(v)}
    if scalars:
        out += [*md_table(["field", "value"], [[k, v] for k, v in scalars.items()]), ""]
    nested = {k: v for k, v in rest.items() if not scalar(v)}
    # flat parts with the same fields (median_ms, mean_ms, min_ms of the same runs): one table, a row each
    groups: dict[tuple[str, ...], list[str]] = {}
    for k, v in nested.items():
        if _flat_dict(v):
            groups.setdefault(tuple(v), []).append(k)
    for k, v in nested.items():
        group = groups.get(tuple(v), []) if _flat_dict(v) else []
        if len(group) > 1:
            if k == group[0]:
                out += [f"{h} {', '.join(group)}", "", *rows_table({g: nested[g] for g in group}), ""]
            continue
        out += [f"{h} {k}", ""]
        tabular = isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()) and all(
            all(scalar(y) or isinstance(y, dict) for y in x.values()) for x in v.values())
        out += [*(rows_table(v) if tabular else generic(v, min(level + 1, 6))), ""]
    return out


def _ab_model(row: dict) -> str:
    """An ablation row as the model users train: its config and head size, as the speed files name it."""
    reg_max = (row.get("options") or {}).get("reg_max")
    return row["cfg"].removesuffix(".yaml") + (f" --reg-max {reg_max}" if reg_max else "")


def _mean(*xs: float) -> float:
    return sum(xs) / len(xs)


DEEPPCB = ["peers-deeppcb-20ep-seed1-cpu.json", "ablation-deeppcb-20ep.json", "ablation-deeppcb-20ep-seed1.json",
           "speed-equal-compute-cpu.json", "gpu-h200-deeppcb-20ep.json"]
AERIAL = "aerial-cars-50ep.json"
# the model picked against each peer on both sets: at or under the peer's inference GFLOPs on both
PICKS = {"yolov5nu": "yolov5n-p2-dfl --reg-max 4", "yolo11n": "yolov5n-dfl --reg-max 4",
         "yolo26n": "yolov5n-dfl-half --reg-max 4", "yolo26n-p2": "yolov5n-p2-dfl-mix --reg-max 4"}
COLS = ["params (M)", "GFLOPs@320", "AP seed 0 / 1", "AP", "AP50", "APs", "train img/s", "latency ms"]


def deeppcb_models(files: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each peer's and each anchor-free ablation row's two-seed figures on deeppcb, by model name (COLS)."""
    if not all(n in files for n in DEEPPCB):
        return {}
    peers, s0, s1, speed, gpu = (files[n] for n in DEEPPCB)
    windows = [speed, *(v for k, v in speed.items() if k[:2] == "20" and isinstance(v, dict))]

    def speed_of(model: str, key: str) -> Any:  # the latest quiet window that timed the model
        return next((w[key][model] for w in reversed(windows) if model in w.get(key, {})), "–")

    # the deployed (fused) peers' size where peer_flops counted it, else the GPU run's count of the training graph
    sizes = {r["model"].removeprefix("Ultralytics "): (r["params_M"], r["gflops_320"]) for r in gpu["rows"]}
    sizes |= {m: (r["params_M"], r["GFLOPs"]) for m, r in files.get(FLOPS, {}).get("models", {}).items()}
    out: dict[str, dict[str, Any]] = {}
    for name, p in peers["peers"].items():
        m = p["mean_seeds_0_1"]
        out[name] = dict(zip(COLS, [*sizes.get(name, ("–", "–")),
                                    f"{p['seed0_gpu']['AP']:.3f} / {p['seed1_cpu']['AP']:.3f}", m["AP"], m["AP50"],
                                    m["APs"], speed_of(name, "train_img_per_s"),
                                    speed_of(name, "forward_latency_ms_median")]))
    for n, a in s0["rows"].items():
        b = s1["rows"].get(n)
        if b is None or a["assigner"] != "tal":
            continue
        name = _ab_model(a)
        out[name] = dict(zip(COLS, [a["params_M"], a["gflops"], f"{a['AP']:.3f} / {b['AP']:.3f}",
                                    *(_mean(a[k], b[k]) for k in ("AP", "AP50", "APs")),
                                    speed_of(name, "train_img_per_s"), speed_of(name, "forward_latency_ms_median")]))
    return out


def headline(files: dict[str, Any]) -> tuple[list[str], list[str]]:
    """One model per peer on both sets: its margins in AP and APs over the peer's seed mean."""
    dp = deeppcb_models(files)
    if not dp or AERIAL not in files:
        return [], []
    ac = {**files[AERIAL]["peers"], **files[AERIAL]["ours"]}
    rows = []
    for peer, ours in PICKS.items():
        if not all(m in dp and m in ac for m in (peer, ours)):
            continue
        margins = [f"{100 * (dp[ours][k] - dp[peer][k]):+.1f}" for k in ("AP", "APs")]
        margins += [f"{100 * (ac[ours]['mean'][k] - ac[peer]['mean'][k]):+.1f}" for k in ("AP", "APs")]
        rows.append([f"{peer} ({cell(dp[peer]['GFLOPs@320'])} / {cell(ac[peer]['GFLOPs_640'])})",
                     f"{ours} ({cell(dp[ours]['GFLOPs@320'])} / {cell(ac[ours]['GFLOPs_640'])})",
                     " / ".join(margins[:2]), " / ".join(margins[2:])])
    text = ["Each Ultralytics peer against the smalldet model picked for it on both data sets: AP and APs points "
            "(x100) over the peer, each side the mean over its seeds; in brackets GFLOPs at inference, at 320 px "
            "(deeppcb, 6 classes) / 640 px (aerial-cars, 4 classes). The two sections below hold the figures.", "",
            *md_table(["peer (GFLOPs)", "ours (GFLOPs)", "deeppcb AP / APs", "aerial-cars AP / APs"], rows)]
    return text, [*DEEPPCB, *([FLOPS] if FLOPS in files else []), AERIAL]


def deeppcb_peers(files: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The equal-compute table: the peers' two seeds against the anchor-free rows ablated at both seeds."""
    models = deeppcb_models(files)
    if not models:
        return [], []
    peers, s0, s1 = (files[n] for n in DEEPPCB[:3])
    flops = FLOPS in files
    rows = [[("Ultralytics " if name in peers["peers"] else "smalldet ") + name, *m.values()]
            for name, m in models.items()]
    size_note = (f"the peers fused as deployed (`{FLOPS}`; YOLO26 keeps one of its two heads)" if flops else
                 "the peers' training graph as `gpu-h200-deeppcb-20ep.json` counted it")
    text = ["deeppcb, 20 epochs at 320 px, batch 16. AP, AP50, APs: the mean of seeds 0 and 1 (pycocotools, val "
            "split). The peers' seed 0 ran on an H200, seed 1 on the 2-core CPU; ours are the ablation rows with "
            f"TAL at both seeds. Params and GFLOPs: ours as built, {size_note}. Train img/s and forward latency "
            "(batch 1, one thread): the latest quiet window of `speed-equal-compute-cpu.json` that timed the model.",
            "", *md_table(["model", *COLS], rows), "",
            "Commands: the peers", "", "```bash", peers["cmd"], *([files[FLOPS]["command"]] if flops else []),
            "```", "",
            "ours (`--rows`: the row names of the ablation tables below)", "", "```bash",
            ablation_command(s0["budget"], "ablation-deeppcb-20ep.json"),
            ablation_command(s1["budget"], "ablation-deeppcb-20ep-seed1.json"), "```"]
    return text, DEEPPCB + ([FLOPS] if flops else [])


def _wall_min(seed: dict) -> Any:
    """A run's minutes under whichever name its file used (the peers' from peer.py's train_s)."""
    for k in ("train_wall_min", "wall_min", "train_min"):
        if k in seed:
            return seed[k]
    return round(seed["train_s"] / 60, 1) if "train_s" in seed else "–"


def aerial_cars_peers(files: dict[str, Any]) -> tuple[list[str], list[str]]:
    if AERIAL not in files:
        return [], []
    d = files[AERIAL]
    rows, cmds = [], []
    for side, label in (("peers", "Ultralytics "), ("ours", "smalldet ")):
        for model, r in d[side].items():
            walls = [_wall_min(s) for s in r["seeds"].values()]
            rows.append([label + model, r.get("GFLOPs_640", "–"), ", ".join(r["seeds"]),
                         *(r["mean"].get(k, "–") for k in ("AP", "AP50", "APs", "car_AP")),
                         " / ".join(cell(w) for w in walls)])
            cmds.append(f"{r['cmd']}   # {label + model}")
    text = [d["what"], "", "AP, AP50, APs and car AP: means over the seeds listed; train wall: minutes per seed "
            "(the peers': their `train_s`, per-epoch val included, where no wall time was taken).", "",
            *md_table(["model", "GFLOPs@640", "seeds", "AP", "AP50", "APs", "car AP", "train wall min"], rows), "",
            "```bash", *cmds, "```"]
    return text, [AERIAL]


LARGE = "large-images-aerial-cars.json"
FAIR_640 = "fair-peer-deeppcb-640.json"  # the same comparison on a set that needs no tiles
LARGE_COLS = ["setup", "model (GFLOPs@640)", "seeds", "AP", "AP50", "APs", "train wall min", "val s"]


def setups_table(d: dict, name: str) -> tuple[list[str], list[str]]:
    """One row per setup (whole-image peer, tiled peer scored with SAHI, ours), each the mean over its seeds."""
    rows, cmds = [], []
    for r in d["rows"]:
        seeds = r["seeds"]
        rows.append([r["setup"], f"{r['model']} ({cell(r['GFLOPs_640'])})", ", ".join(seeds),
                     *(r["mean"][k] for k in ("AP", "AP50", "APs")),
                     " / ".join(cell(_wall_min(s)) for s in seeds.values()), r.get("val_s", "–")])
        cmds += [f"# {r['setup']}: {r['model']}", *r["cmd"]]
    notes = [f"- {n}" for n in d.get("findings", [])]
    return [d["what"], "", *md_table(LARGE_COLS, rows), "", *([d["val_s"], ""] if d.get("val_s") else []),
            *notes, *([""] if notes else []),
            "```bash", *cmds, "```"], [name]


def setups_section(name: str) -> Callable[[dict[str, Any]], tuple[list[str], list[str]]]:
    """The section renderer of one setups file (nothing when the file is absent)."""
    return lambda files: setups_table(files[name], name) if name in files else ([], [])


def ablation_command(b: dict, name: str) -> str:
    """The benchmarks.ablation call whose budget the file records (the budget is its options)."""
    hs = " ".join(b.get("hyp_set") or [])
    return (f"python -m benchmarks.ablation --data {b['data']} --epochs {b['epochs']} --imgsz {b['imgsz']} "
            f"--batch {b['batch']} --seed {b['seed']} --threads {b['threads']} --hyp-set {hs}".rstrip()
            + (f" --recipe {b['recipe']}" if b.get("recipe") else "")
            + f" --rows ROW ... --out benchmarks/results/{name}")


def ablations(files: dict[str, Any]) -> tuple[list[str], list[str]]:
    names = sorted(n for n in files if n.startswith("ablation-"))
    text: list[str] = []
    for n in names:
        text += [f"### {n.removesuffix('.json')}", "", "```bash", ablation_command(files[n]["budget"], n), "```", "",
                 ablation_table(files[n]).rstrip("\n"), ""]
    return text, names


# (title, renderer): the sections users read first; the rest of the files follow generically
SECTIONS: list[tuple[str, Callable[[dict[str, Any]], tuple[list[str], list[str]]]]] = [
    ("One model per peer on both data sets", headline),
    ("deeppcb: against the Ultralytics peers at equal compute", deeppcb_peers),
    ("aerial-cars: against the Ultralytics peers at equal compute", aerial_cars_peers),
    ("Large images: whole-image peer, tiled peer with SAHI, ours", setups_section(LARGE)),
    ("deeppcb at 640: the fair peer needs no tiles", setups_section(FAIR_640)),
    ("Ablations", ablations),
]


def _has_command(d: Any) -> bool:
    if isinstance(d, dict):
        return any(k in d for k in CMD_KEYS) or any(_has_command(v) for v in d.values())
    return isinstance(d, list) and any(_has_command(v) for v in d)


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"{path}: not valid JSON ({e})") from None


def render(results: Path | None = None) -> str:
    files = {p.name: _load(p) for p in sorted((results or RESULTS).glob("*.json"))}
    out = ["# Results", "", f"Generated by `{COMMAND}` from `benchmarks/results/*.json`; do not edit by hand "
           "(after adding or changing a results file, run that command). Each section names its files and the "
           "command that measured them. AP figures are COCO AP by pycocotools; – is a value the file does not "
           "have, or AP that is undefined (no val box of that size).", ""]
    done: set[str] = set()
    for title, fn in SECTIONS:
        text, used = fn(files)
        if used:
            out += [f"## {title}", "", "Files: " + ", ".join(f"`{u}`" for u in used), "", *text, ""]
            done.update(used)
    rest = [name for name in files if name not in done]
    if rest:
        out += ["## Other measurements", "", "Every other file as it is: its text, its command, its numbers.", ""]
    for name in rest:
        no_cmd = [] if _has_command(files[name]) else ["*command:* none recorded in the file", ""]
        out += [f"### {name.removesuffix('.json')}", "", f"File: `{name}`", "", *no_cmd, *generic(files[name], 4), ""]
    # contents: the sections and their files, linked by GitHub's heading anchors
    heads = [ln for ln in out if ln.startswith(("## ", "### "))]
    toc = [f"{'  ' * (h.count('#') - 2)}- [{h.lstrip('# ')}](#{_anchor(h.lstrip('# '))})" for h in heads]
    out[4:4] = ["Contents:", "", *toc, ""]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).rstrip() + "\n"


def _anchor(title: str) -> str:
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def write_page(results: Path | None = None, page: Path | None = None) -> None:
    page = page or PAGE
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(render(results or RESULTS))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only check that the page is current")
    opt = ap.parse_args(argv)
    if opt.check:
        if not PAGE.exists() or PAGE.read_text() != render():
            raise SystemExit(f"{PAGE} is not current: run {COMMAND}")
        return
    write_page()
    print(f"wrote {PAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
