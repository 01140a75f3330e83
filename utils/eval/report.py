"""val.py's outputs: the console table and the plot set (txt predictions: utils/inference/writer.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


from utils.eval.protocols import AP_KEY, BUCKET_LABEL, COCO, Protocol
from utils.logger import LOG
from utils.text import display_text


def _f(v: float) -> str:
    return f"{v:11.3f}" if v >= 0 else f"{'-':>11}"


def print_results(res: dict[str, Any], names: Sequence[str], shape: tuple | None, scorer: str = "pycocotools",
                  protocol: Protocol = COCO) -> None:
    """YOLOv5-style table (class, images, instances, P, R, AP50, AP), then the protocol's summary and
    size-bucket figures and the speed line. AP digits are those of the figures dict (pycocotools' when
    scorer is 'pycocotools', the in-memory evaluator's when it is 'memory')."""
    head = f"{'Class':>20}{'Images':>11}{'Instances':>11}{'P':>11}{'R':>11}{'AP50':>11}{'AP50-95':>11}"
    lines = [head, f"{'all':>20}{res['images']:>11}{res['instances']:>11}{res['precision']:11.3f}"
                   f"{res['recall']:11.3f}{_f(res['AP50'])}{_f(res['AP'])}"]
    if len(names) > 1:
        for row in res["per_class"]:
            lines.append(f"{display_text(row['name'], 20):>20}{row['images']:>11}{row['instances']:>11}{row['P']:11.3f}"
                         f"{row['R']:11.3f}{_f(row['AP50'])}{_f(row['AP'])}")
    memory = scorer == "memory"
    src = "in-memory COCO-style (fast)" if memory else "pycocotools"
    if protocol.name != "coco":  # the default table reads as before; other protocols say which they are
        src += f" ({protocol.title}, maxDets {protocol.max_det})"
    figs = ", ".join(f"{k} {res[k]:.3f}" for k in protocol.headline if k in res)
    lines.append(f"{src}: {figs}")
    buckets = [(AP_KEY[b], ", ".join(filter(None, (protocol.bucket_names.get(b), BUCKET_LABEL[b]))))
               for b in protocol.bucket_line if AP_KEY[b] in res]
    if buckets:
        lines.append(f"{protocol.bucket_title}: " + ", ".join(f"{k} ({lab}) {res[k]:.3f}" for k, lab in buckets))
    if "AP_fast" in res:
        lines.append(f"in-memory fast AP {res['AP_fast']:.4f} ({protocol.title} {res['AP']:.4f}, diff "
                     f"{res['AP_fast'] - res['AP']:+.4f}); AP50 {res['AP50_fast']:.4f} "
                     f"(diff {res['AP50_fast'] - res['AP50']:+.4f})")
    sp = res["speed"]
    lines.append(f"Speed: {sp['preprocess']:.1f}ms pre-process, {sp['inference']:.1f}ms inference, "
                 f"{sp['nms']:.1f}ms NMS per image at shape {shape}; metrics {sp['match']:.1f}ms matching"
                 + (f", {sp['coco']:.1f}ms COCOeval" if not memory else "") + " per image")
    LOG.info("\n".join(lines))


def save_plots(save_dir: Path, res: dict, fast_res: dict, confusion: Any, names: Sequence[str],
               coco: dict | None, cat_ids: Sequence[int]) -> None:
    """PR curve (pycocotools' own precision at IoU .5 on the full path), F1/P/R-confidence curves,
    confusion matrix, AP by size, AP per class."""
    from utils.plots import evaluation as plots
    cur = fast_res["curves"]
    if coco is not None and len(names) == len(cat_ids) and len(coco["pr50"]) == len(names):
        pr = {k: coco["pr50"][int(cat_ids[k])] for k in range(len(names))}
    elif coco is not None and len(coco["pr50"]) == 1:  # single_cls: useCats=0
        pr = {0: next(iter(coco["pr50"].values()))}
    else:
        pr = fast_res["pr50"]
    ap50 = {row["class"]: row["AP50"] for row in res["per_class"]}
    plots.plot_pr_curve(pr, ap50, names, save_dir / "PR_curve.png")
    for ylabel, key in (("F1", "f1"), ("Precision", "p"), ("Recall", "r")):
        plots.plot_conf_curve(cur["px"], cur[key], cur["has_gt"], names, ylabel, save_dir / f"{key.upper()}_curve.png",
                              best_conf=cur["best_conf"])
    if confusion is not None:
        plots.plot_confusion_matrix(confusion.matrix, names, save_dir / "confusion_matrix.png")
    plots.plot_ap_by_size(res, save_dir / "AP_by_size.png")
    if len(names) > 1:
        plots.plot_per_class_ap([r["name"] for r in res["per_class"]], [r["AP"] for r in res["per_class"]],
                                save_dir / "AP_per_class.png")

