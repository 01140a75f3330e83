"""Label assignment: which prediction positions learn which ground-truth box.

One interface (base.Assigner), one result (result.Assignment), one grid (grid.CellGrid), and a
registry (registry.build_assigner) holding every assigner: atss for both heads (the anchor head's
default), iou (YOLOv5's rule) for the anchor head, tal for the anchor-free head (its default).
Importing this package registers them all.
"""
from utils.assign.base import HEADS, Assigner
from utils.grid import CellGrid, LevelLayout, cell_indices, make_grid
from utils.assign.registry import ASSIGNERS, DEFAULT_FOR_HEAD, assigner_class, assigners_for, build_assigner
from utils.assign.result import Assignment

# the assigners register themselves on import
from utils.assign.atss import ATSSAssigner
from utils.assign.iou import IoUAssigner
from utils.assign.tal import TaskAlignedAssigner

__all__ = ["ASSIGNERS", "ATSSAssigner", "Assigner", "Assignment", "CellGrid", "DEFAULT_FOR_HEAD", "HEADS",
           "IoUAssigner", "LevelLayout", "TaskAlignedAssigner", "assigner_class", "assigners_for",
           "build_assigner", "cell_indices", "make_grid"]
