"""benchmarks/ablation.py: the table it shows and the results page it keeps current (training itself is what
test_train covers)."""
from __future__ import annotations

import json
from pathlib import Path

from benchmarks.ablation import ROWS, table

ROW = dict(AP=0.1234, AP50=0.3, APs=0.05, AP_tiny=0.01, params_M=1.77, gflops=1.05, train_img_per_s=20.5,
           latency_ms=12.3)
RESULTS = {"budget": dict(data="data/deeppcb.yaml", epochs=3, imgsz=320, batch=16, seed=0, threads=2,
                             hyp_set=["warmup_epochs=1"]),
           "rows": {"p2": {"row": "p2", "what": ROWS["p2"][0], **ROW},
                    "base": {"row": "base", "what": ROWS["base"][0], **ROW, "AP": 0.2, "train_wall_min": 12.34}}}


def test_table_lists_rows_in_grid_order_with_budget():
    t = table(RESULTS)
    lines = [ln for ln in t.splitlines() if ln.startswith("| base") or ln.startswith("| p2")]
    assert lines[0].startswith("| base") and "| 0.200 |" in lines[0]
    assert lines[1].startswith("| p2") and "| 0.123 |" in lines[1]
    # the wall column: minutes where the row recorded them, a dash for rows trained before the column
    assert lines[0].split("|")[-3].strip() == "12.3" and lines[1].split("|")[-3].strip() == "–"
    header = next(ln for ln in t.splitlines() if ln.startswith("| row"))
    rule = next(ln for ln in t.splitlines() if ln.startswith("|---"))
    assert header.count("|") == rule.count("|") == lines[0].count("|") == lines[1].count("|")
    assert header.split("|")[-3].strip() == "train wall min"
    assert "3 epochs at 320 px, batch 16" in t


def test_a_file_without_wall_times_gets_no_wall_column():
    rows = {n: {k: v for k, v in r.items() if k != "train_wall_min"} for n, r in RESULTS["rows"].items()}
    t = table({**RESULTS, "rows": rows})
    header = next(ln for ln in t.splitlines() if ln.startswith("| row"))
    assert "wall" not in t and header.count("|") == next(ln for ln in t.splitlines()
                                                          if ln.startswith("| base")).count("|") == 11


def _captured_run(monkeypatch, argv: list[str], tmp_path: Path, out: Path | None = None) -> list[dict]:
    """main(argv) with training and the speed probes replaced by recorders: what each row asks train.run."""
    import benchmarks.speed
    import train

    calls: list[dict] = []

    def fake_run(**kw):
        calls.append(kw)
        return {"metrics": dict(AP=0.1, AP50=0.2, APs=0.05, AP_tiny=-1.0)}

    monkeypatch.setattr(train, "run", fake_run)
    monkeypatch.setattr(benchmarks.speed, "our_train_speed", lambda *a, **k: 1.0)
    monkeypatch.setattr(benchmarks.speed, "our_latency", lambda *a, **k: 2.0)
    monkeypatch.setattr(benchmarks.speed, "latency_images", lambda *a, **k: [])
    from benchmarks.ablation import main
    main([*argv, "--data", "data/shapes.yaml", "--out", str(out or tmp_path / "out.json"),
          "--threads", "1"])
    return calls


def test_default_rows_leave_the_hyp_to_train_py_so_the_recipe_can_set_tile(monkeypatch, tmp_path):
    """Naming default.yaml as --hyp would make it a hyp file, which outranks --recipe auto's tile."""
    calls = _captured_run(monkeypatch, ["--rows", "base", "dfl-tuned", "--recipe", "auto", "--cache"], tmp_path)
    assert [c["hyp"] for c in calls] == [None, "configs/hyps/small-objects-dfl.yaml"]
    assert all(c["recipe"] == "auto" and c["cache"] == "ram" for c in calls)
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["budget"]["recipe"] == "auto" and set(saved["rows"]) == {"base", "dfl-tuned"}
    assert all(r["train_wall_min"] >= 0 for r in saved["rows"].values())
    assert ", --recipe auto;" in table(saved)


def test_budget_without_recipe_matches_the_files_written_before_the_option(monkeypatch, tmp_path):
    _captured_run(monkeypatch, ["--rows", "atss"], tmp_path)
    budget = json.loads((tmp_path / "out.json").read_text())["budget"]
    assert "recipe" not in budget
    assert set(budget) == set(json.loads(Path("benchmarks/results/ablation-deeppcb-20ep.json").read_text())["budget"])


def test_a_run_into_benchmarks_results_regenerates_the_page(monkeypatch, tmp_path):
    """A file the results page shows gets the page rewritten at once (no README is touched); a file elsewhere
    leaves the page alone."""
    from benchmarks import results_page

    results, page = tmp_path / "results", tmp_path / "docs" / "results.md"
    results.mkdir()
    monkeypatch.setattr(results_page, "RESULTS", results)
    monkeypatch.setattr(results_page, "PAGE", page)
    readme = Path("README.md").read_text()
    _captured_run(monkeypatch, ["--rows", "atss"], tmp_path)  # --out tmp_path/out.json: not a results file
    assert not page.exists()
    (tmp_path / "out.json").rename(results / "ablation-x.json")
    _captured_run(monkeypatch, ["--rows", "atss"], tmp_path, out=results / "ablation-x.json")
    text = page.read_text()
    assert "### ablation-x" in text and "| atss | ATSS assigner | 0.100 | 0.200 | 0.050 | – |" in text
    assert Path("README.md").read_text() == readme


def test_undefined_ap_tiny_is_a_dash():
    t = table({**RESULTS, "rows": {"base": {"row": "base", "what": ROWS["base"][0], **ROW, "AP_tiny": -1.0}}})
    assert "| 0.050 | – | 1.77 |" in t
