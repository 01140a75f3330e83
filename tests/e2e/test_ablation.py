"""benchmarks/ablation.py: the README table it writes (training itself is what test_train covers)."""
from __future__ import annotations

import json
from pathlib import Path

from benchmarks.ablation import ROWS, mark, table, write_readme

OUT = Path("benchmarks/results/ablation-deeppcb.json")
MARK = mark(OUT)

ROW = dict(AP=0.1234, AP50=0.3, APs=0.05, AP_tiny=0.01, params_M=1.77, gflops=1.05, train_img_per_s=20.5,
           latency_ms=12.3)
RESULTS = {"budget": dict(data="data/deeppcb.yaml", epochs=3, imgsz=320, batch=16, seed=0, threads=2,
                             hyp_set=["warmup_epochs=1"]),
           "rows": {"p2": {"row": "p2", "what": ROWS["p2"][0], **ROW},
                    "base": {"row": "base", "what": ROWS["base"][0], **ROW, "AP": 0.2, "train_wall_min": 12.34}}}


def test_table_lists_rows_in_grid_order_with_budget():
    t = table(RESULTS, OUT)
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
    t = table({**RESULTS, "rows": rows}, OUT)
    header = next(ln for ln in t.splitlines() if ln.startswith("| row"))
    assert "wall" not in t and header.count("|") == next(ln for ln in t.splitlines()
                                                          if ln.startswith("| base")).count("|") == 11


def test_write_readme_replaces_only_the_old_table(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{MARK}\n\nBudget: old\n\n| a |\n|---|\n| old |\n\nAfter the table.\n")
    write_readme(RESULTS, OUT, readme)
    text = readme.read_text()
    assert "old" not in text and text.count(MARK) == 1
    assert text.startswith("# Title\n") and text.rstrip().endswith("After the table.")
    write_readme(RESULTS, OUT, readme)  # idempotent
    assert readme.read_text() == text


def test_write_readme_without_a_table_yet_keeps_what_follows(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{MARK}\nNo rows yet.\n\n## Next section\n\nText.\n")
    write_readme(RESULTS, OUT, readme)
    text = readme.read_text()
    assert text.count(MARK) == 1 and "No rows yet." in text and text.rstrip().endswith("Text.")
    assert text.index("| row |") < text.index("No rows yet.")
    write_readme(RESULTS, OUT, readme)  # now the table is there and is replaced, not added again
    assert readme.read_text().count("| row |") == 1


def test_tables_of_two_budgets_are_replaced_independently(tmp_path):
    readme, other = tmp_path / "README.md", Path("ablation-deeppcb-20ep.json")
    readme.write_text(f"{MARK}\n\nBudget: 3\n\n| a |\n|---|\n| old3 |\n\nBetween.\n\n"
                      f"{mark(other)}\n\nBudget: 20\n\n| a |\n|---|\n| old20 |\n")
    long = {**RESULTS, "budget": {**RESULTS["budget"], "epochs": 20}}
    write_readme(long, other, readme)
    text = readme.read_text()
    assert "old3" in text and "old20" not in text and "20 epochs at 320 px" in text
    write_readme(RESULTS, OUT, readme)
    text = readme.read_text()
    assert "old3" not in text and "Between." in text and text.index("3 epochs") < text.index("20 epochs")


def test_a_new_marker_above_an_old_table_leaves_the_text_between_alone(tmp_path):
    readme, other = tmp_path / "README.md", Path("ablation-deeppcb-20ep.json")
    readme.write_text(f"{mark(other)}\n\nWhat the 20-epoch rows show.\n\n"
                      f"{MARK}\n\nBudget: old\n\n| a |\n|---|\n| old3 |\n")
    write_readme(RESULTS, other, readme)
    text = readme.read_text()
    assert "What the 20-epoch rows show." in text and "old3" in text and text.count("| row |") == 1


def _captured_run(monkeypatch, argv: list[str], tmp_path: Path) -> list[dict]:
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
    main([*argv, "--data", "data/shapes.yaml", "--out", str(tmp_path / "out.json"), "--threads", "1"])
    return calls


def test_default_rows_leave_the_hyp_to_train_py_so_the_recipe_can_set_tile(monkeypatch, tmp_path):
    """Naming default.yaml as --hyp would make it a hyp file, which outranks --recipe auto's tile."""
    calls = _captured_run(monkeypatch, ["--rows", "base", "dfl-tuned", "--recipe", "auto", "--cache"], tmp_path)
    assert [c["hyp"] for c in calls] == [None, "configs/hyps/small-objects-dfl.yaml"]
    assert all(c["recipe"] == "auto" and c["cache"] is True for c in calls)
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["budget"]["recipe"] == "auto" and set(saved["rows"]) == {"base", "dfl-tuned"}
    assert all(r["train_wall_min"] >= 0 for r in saved["rows"].values())
    assert ", --recipe auto;" in table(saved, tmp_path / "out.json")


def test_budget_without_recipe_matches_the_files_written_before_the_option(monkeypatch, tmp_path):
    _captured_run(monkeypatch, ["--rows", "atss"], tmp_path)
    budget = json.loads((tmp_path / "out.json").read_text())["budget"]
    assert "recipe" not in budget
    assert set(budget) == set(json.loads(Path("benchmarks/results/ablation-deeppcb-20ep.json").read_text())["budget"])


def test_readme_tables_are_the_results_files():
    """Every ablation results file the README shows is shown as it is (rows added to a file without --readme,
    or a table edited by hand, fail here)."""
    readme = Path("README.md").read_text()
    shown = [p for p in sorted(Path("benchmarks/results").glob("ablation-*.json")) if mark(p) in readme]
    assert shown, "the README shows no ablation table"
    for path in shown:
        assert table(json.loads(path.read_text()), path) in readme, path


def test_undefined_ap_tiny_is_a_dash():
    t = table({**RESULTS, "rows": {"base": {"row": "base", "what": ROWS["base"][0], **ROW, "AP_tiny": -1.0}}}, OUT)
    assert "| 0.050 | – | 1.77 |" in t
