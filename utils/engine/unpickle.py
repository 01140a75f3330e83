"""Read checkpoints that pickle another code base's classes (ultralytics/yolov5, the Ultralytics package)
without running any of that code.

``torch.load(f, pickle_module=restricted, weights_only=False)`` hands every global the pickle names to
``RestrictedUnpickler.find_class``. Model classes of the known code bases (and torch.nn's) become inert
``Stub`` objects that only collect the state the pickle gives them; tensors are rebuilt by torch's own
functions; a few harmless builtins are allowed; anything else (``os.system``, ``builtins.eval``, ...) is
refused with an UnsafePickleError before it can be called.
"""
from __future__ import annotations

import codecs
import collections
import pickle
from typing import Any

import numpy as np
import torch


class UnsafePickleError(pickle.UnpicklingError):
    """The file names a global we do not allow (it could run code when loaded)."""


# module prefixes whose classes are model pieces: loaded as Stubs, never imported
STUB_PREFIXES = (
    "models.",                  # ultralytics/yolov5: models.yolo.DetectionModel, models.common.C3, ...
    "ultralytics.nn.",          # the Ultralytics package: ultralytics.nn.tasks.DetectionModel, .modules.*
    "torch.nn.modules.",        # Conv2d, BatchNorm2d, SiLU, ModuleList, ... (their state only)
)
STUB_MODULES = ("models", "ultralytics.utils", "utils.general")  # exact module names (e.g. IterableSimpleNamespace)

def _path_string(*parts: Any) -> str:
    """A pickled pathlib path (its parts) as a plain string."""
    return "/".join(str(p) for p in parts)


# the real objects a checkpoint needs, all free of side effects
ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set, ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset, ("__builtin__", "frozenset"): frozenset,
    ("builtins", "slice"): slice, ("builtins", "complex"): complex,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch", "float32"): torch.float32, ("torch", "float16"): torch.float16,
}
# numpy values that unstripped checkpoints hold (best_fitness, metrics): rebuilt by numpy's own pickle helpers
_NP_RECONSTRUCT, _NP_SCALAR = np.ndarray.__reduce__(np.zeros(1))[0], np.float64(0).__reduce__()[0]
for _m in ("numpy.core.multiarray", "numpy._core.multiarray"):
    ALLOWED[(_m, "_reconstruct")], ALLOWED[(_m, "scalar")] = _NP_RECONSTRUCT, _NP_SCALAR
ALLOWED[("numpy", "ndarray")], ALLOWED[("numpy", "dtype")] = np.ndarray, np.dtype
ALLOWED[("_codecs", "encode")] = codecs.encode  # protocol 2 writes bytes as encode(str, 'latin1')
for _p in ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path"):
    ALLOWED[("pathlib", _p)] = _path_string
for _dt in ("float16", "float32", "float64", "bfloat16", "int64", "int32", "uint8", "bool"):
    ALLOWED[("torch", _dt)] = getattr(torch, _dt)


class Stub:
    """An inert stand-in for a pickled object of a class we do not import: keeps the state it is given."""

    _qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any):
        self._args, self._kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            state, slots = state  # (dict, slot dict) form
            state = {**(state or {}), **(slots or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state

    # a stub of a dict or list subclass (e.g. IterableSimpleNamespace variants) may be filled item by item
    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("_items", {})[key] = value

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("_list", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("_list", []).extend(values)

    def __repr__(self) -> str:
        return f"<stub {self._qualname}>"


_STUBS: dict[str, type] = {}


def stub_class(module: str, name: str) -> type:
    """One Stub subclass per pickled class name, so the tree keeps which class each node was."""
    qual = f"{module}.{name}"
    if qual not in _STUBS:
        _STUBS[qual] = type(name, (Stub,), {"_qualname": qual, "__module__": __name__})
    return _STUBS[qual]


def stub_name(obj: Any) -> str:
    """'models.common.C3' for a Stub, '' for anything else."""
    return obj._qualname if isinstance(obj, Stub) else ""


class RestrictedUnpickler(pickle.Unpickler):
    """find_class that returns Stubs for model classes, torch's tensor rebuilders, and refuses the rest."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        if module.startswith(STUB_PREFIXES) or module in STUB_MODULES:
            if name.startswith("_") or "." in name:  # helper functions, nested lookups: never classes of state
                raise UnsafePickleError(f"refused to load global {module}.{name}")
            return stub_class(module, name)
        raise UnsafePickleError(f"refused to load global {module}.{name} (not a model class or tensor)")


class _RestrictedPickleModule:
    """What torch.load's pickle_module needs: Unpickler (and load, for legacy files)."""

    Unpickler = RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError
    __name__ = "smalldet_restricted_pickle"

    @staticmethod
    def load(f: Any, **kwargs: Any) -> Any:
        return RestrictedUnpickler(f, **kwargs).load()


restricted_pickle = _RestrictedPickleModule()


def restricted_load(path: Any) -> Any:
    """torch.load with the restricted unpickler, on the CPU."""
    return torch.load(path, map_location="cpu", pickle_module=restricted_pickle, weights_only=False)


def module_state(root: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """nn.Module.state_dict() of a Stub tree: parameters and persistent buffers by dotted name."""
    out: dict[str, torch.Tensor] = {}
    d = getattr(root, "__dict__", {})
    skip = d.get("_non_persistent_buffers_set") or set()
    for key in ("_parameters", "_buffers"):
        for name, t in (d.get(key) or {}).items():
            if t is not None and isinstance(t, torch.Tensor) and not (key == "_buffers" and name in skip):
                out[prefix + name] = t.detach()
    for name, child in (d.get("_modules") or {}).items():
        if child is not None:
            out.update(module_state(child, f"{prefix}{name}."))
    return out


def submodule(root: Any, dotted: str) -> Any:
    """The Stub at 'model.24' of a Stub tree (or None)."""
    node = root
    for part in dotted.split("."):
        node = (getattr(node, "__dict__", {}).get("_modules") or {}).get(part)
        if node is None:
            return None
    return node
