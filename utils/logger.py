"""Run logging: console lines, results.csv (one row per epoch) and TensorBoard."""
from __future__ import annotations

import csv
import logging
from pathlib import Path


LOG = logging.getLogger("smalldet")
if not LOG.handlers:
    _h = logging.StreamHandler()
    _h.setFormatter(logging.Formatter("%(message)s"))
    LOG.addHandler(_h)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False


class RunLogger:
    """Writes results.csv and TensorBoard events under save_dir (rank 0 only)."""

    def __init__(self, save_dir: str | Path, enabled: bool = True, tensorboard: bool = True):
        self.save_dir = Path(save_dir)
        self.enabled = enabled
        self.csv = self.save_dir / "results.csv"
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(self.save_dir))
            except Exception as e:  # TensorBoard is optional at run time
                LOG.warning(f"TensorBoard disabled: {e}")

    def log_epoch(self, epoch: int, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        new = not self.csv.exists()
        with open(self.csv, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["epoch", *row])
            w.writerow([epoch, *(f"{v:.6g}" for v in row.values())])
        if self.tb:
            for k, v in row.items():
                self.tb.add_scalar(k, v, epoch)
            self.tb.flush()

    def truncate_after(self, epoch: int) -> None:
        """On resume, drop rows of epochs that will be trained again."""
        if not self.csv.exists():
            return
        with open(self.csv) as f:
            rows = list(csv.reader(f))
        keep = rows[:1] + [r for r in rows[1:] if int(r[0]) <= epoch]
        with open(self.csv, "w", newline="") as f:
            csv.writer(f).writerows(keep)

    def close(self) -> None:
        if self.tb:
            self.tb.close()

