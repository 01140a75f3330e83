"""benchmarks/results_page.py: docs/results.md is what the results files give, and every file shows on it."""
from __future__ import annotations

import json
import shutil

import pytest

from benchmarks import results_page
from benchmarks.results_page import COMMAND, PAGE, RESULTS, render


def test_the_page_is_current():
    """A results file added or changed without regenerating the page fails here, saying what to run."""
    assert PAGE.exists() and PAGE.read_text() == render(), f"docs/results.md is not current: run {COMMAND}"


def test_check_flag_fails_on_a_stale_page(monkeypatch, tmp_path):
    page = tmp_path / "results.md"
    monkeypatch.setattr(results_page, "PAGE", page)
    page.write_text(render() + "edited by hand\n")
    with pytest.raises(SystemExit, match=COMMAND):
        results_page.main(["--check"])
    page.write_text(render())
    results_page.main(["--check"])


def test_every_results_file_is_on_the_page():
    text = render()
    for p in RESULTS.glob("*.json"):
        assert f"`{p.name}`" in text, p.name


def test_a_new_file_gets_a_generic_section_with_its_numbers(tmp_path):
    new = {"what": "a new measurement", "command": "python -m benchmarks.new --out x.json", "images": 7,
           "ratio": {"ours_over_peer": 0.8125}, "rows": [{"model": "a", "AP": 0.31234}, {"model": "b", "AP": -1.0}]}
    (tmp_path / "new-thing.json").write_text(json.dumps(new))
    text = render(tmp_path)
    section = text.split("### new-thing", 1)[1]
    assert "*what:* a new measurement" in section and "python -m benchmarks.new --out x.json" in section
    assert "| images | 7 |" in section and "| ours_over_peer | 0.8125 |" in section
    assert "| 0 | a | 0.3123 |" in section and "| 1 | b | – |" in section  # -1: undefined AP


def test_tables_follow_the_files(tmp_path):
    """The numbers come from the files: change one in a copy and the page changes with it."""
    for name in ("aerial-cars-50ep.json", "ablation-deeppcb-20ep.json"):
        shutil.copy(RESULTS / name, tmp_path / name)
    d = json.loads((tmp_path / "aerial-cars-50ep.json").read_text())
    d["ours"]["yolov5n-dfl-half --reg-max 4"]["mean"]["APs"] = 0.9876
    (tmp_path / "aerial-cars-50ep.json").write_text(json.dumps(d))
    text = render(tmp_path)
    row = next(ln for ln in text.splitlines() if ln.startswith("| smalldet yolov5n-dfl-half --reg-max 4 |"))
    assert "| 0.9876 |" in row and "| 0, 1, 2, 3 |" in row
    assert "| dcn | deformable conv: P5 down conv + P3 output | 0.199 |" in text
    assert "--out benchmarks/results/ablation-deeppcb-20ep.json" in text
    assert "## deeppcb" not in text  # its section needs the peers' files, which this copy lacks


def test_a_broken_file_is_named(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SystemExit, match="bad.json"):
        render(tmp_path)


def test_the_deeppcb_means_are_the_seed_files_mean():
    s0, s1 = (json.loads((RESULTS / f"ablation-deeppcb-20ep{x}.json").read_text())["rows"]["p2-dfl-r4"]
              for x in ("", "-seed1"))
    row = next(ln for ln in render().splitlines() if ln.startswith("| smalldet yolov5n-p2-dfl --reg-max 4 |"))
    assert f"| {(s0['AP'] + s1['AP']) / 2:.4g} |" in row and f"| {s0['AP']:.3f} / {s1['AP']:.3f} |" in row


def test_headline_margins_are_the_differences_of_the_seed_means():
    aerial = json.loads((RESULTS / "aerial-cars-50ep.json").read_text())
    ours, peer = aerial["ours"]["yolov5n-dfl-half --reg-max 4"]["mean"], aerial["peers"]["yolo26n"]["mean"]
    row = next(ln for ln in render().splitlines() if ln.startswith("| yolo26n ("))
    want = " / ".join(f"{100 * (ours[k] - peer[k]):+.1f}" for k in ("AP", "APs"))
    assert row.split("|")[-2].strip() == want


def test_a_file_without_a_command_says_so(tmp_path):
    (tmp_path / "bare.json").write_text(json.dumps({"AP": 0.5}))
    (tmp_path / "nested.json").write_text(json.dumps({"runs": [{"cmd": "python x.py", "AP": 0.5}]}))
    text = render(tmp_path)
    assert text.split("### bare", 1)[1].split("###", 1)[0].count("none recorded") == 1
    assert "none recorded" not in text.split("### nested", 1)[1]


def test_large_images_section_is_one_row_per_setup_with_seed_walls_and_findings(tmp_path):
    rows = [{"setup": "tiled peer", "model": "P", "GFLOPs_640": 5.3,
             "seeds": {"0": {"train_s": 120.0}, "1": {"train_s": 60.0}},
             "mean": {"AP": 0.0218, "AP50": 0.07, "APs": 0.06}, "val_s": 26.8, "cmd": ["peer-cmd"]},
            {"setup": "ours", "model": "O", "GFLOPs_640": 5.1, "seeds": {"3": {"train_wall_min": 22.8}},
             "mean": {"AP": 0.0536, "AP50": 0.13, "APs": 0.13}, "cmd": ["ours-cmd"]}]
    (tmp_path / results_page.LARGE).write_text(json.dumps(
        {"what": "large images", "rows": rows, "val_s": "val s: how timed", "findings": ["ours leads"]}))
    section = render(tmp_path).split("## Large images", 1)[1]
    assert "| tiled peer | P (5.3) | 0, 1 | 0.0218 | 0.07 | 0.06 | 2 / 1 | 26.8 |" in section
    assert "| ours | O (5.1) | 3 | 0.0536 | 0.13 | 0.13 | 22.8 | – |" in section
    assert "val s: how timed" in section and "- ours leads" in section and "peer-cmd" in section
