"""Checkpoint files: our own (checkpoint.py, atomic writes, no pickled classes) and those of ultralytics/yolov5
and the Ultralytics package (foreign.py, read by the restricted unpickler in unpickle.py). Below both the
engine (which writes them) and inference/eval (which read them), so reading a checkpoint needs no trainer."""
