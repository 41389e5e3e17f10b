"""Run folders: typed JSON configs, safetensors weights, atomic writes.

A run folder (DESIGN.md, "Runs and checkpoints") holds::

    config.json        RunConfig: registry name + model config, dataset name + DataSpec, TrainConfig
    model.safetensors  raw weights (the model's state_dict)
    ema.safetensors    EMA weights, when the run kept an EMA
    train_state.pt     everything else a resume needs (written by genmodels.train)
    metrics.jsonl      one JSON object per logged step (written by genmodels.train)
    samples/           PNG sample grids (written by genmodels.train)

``config.json`` is enough to rebuild the model through the typed registry
(``MODELS.get(name).build(config_from_dict(entry.config_cls, d), spec)``), so loading never executes
pickled code: weights are safetensors, and the one torch file (``train_state.pt``) is only ever read
with ``torch.load(weights_only=True)``. Every file is written atomically (:mod:`genmodels.fileio`: temp file
in the same folder, fsync, ``os.replace``), so a run killed mid-write keeps its previous, complete files.

    >>> import dataclasses
    >>> @dataclasses.dataclass(frozen=True)
    ... class C:
    ...     widths: tuple[int, ...] = (8, 16)
    >>> config_from_dict(C, {"widths": [32, 64]})
    C(widths=(32, 64))
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import os
import pickle
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import safetensors
import safetensors.torch
import torch
from torch import Tensor, nn

from .core import DataSpec, GenerativeModel
from .data import DataFingerprint, Dataset, Quantization, resolve_source
from .families import MODELS
from .fileio import atomic_write_bytes, atomic_write_text  # re-exported: callers used to import them here
from .train_config import TrainConfig

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "EMA_WEIGHTS_NAME",
    "RunConfig",
    "config_from_dict",
    "config_to_dict",
    "save_pretrained",
    "load_run_config",
    "load_train_state",
    "from_pretrained",
    "config_limits",
    "atomic_write_bytes",
    "atomic_write_text",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
EMA_WEIGHTS_NAME = "ema.safetensors"
_FORMAT = "genmodels.run"
_FORMAT_VERSION = 1
_ALIASES_KEY = "genmodels.aliases"  # safetensors metadata: {dropped name: kept name} for tied tensors

logger = logging.getLogger("genmodels.checkpoint")
T = TypeVar("T")


# ----------------------------------------------------------------------------------------------
# Typed configs <-> JSON


def config_to_dict(config: Any) -> dict:
    """A frozen config dataclass as a JSON-serializable dict (tuples → lists, enums → values).

    Inverse of :func:`config_from_dict`.

    Raises:
        TypeError: if ``config`` is not a dataclass instance.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a config dataclass instance, got {type(config).__name__}")
    return _jsonable(dataclasses.asdict(config))


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, Path):
        return str(v)
    return v


def config_from_dict(cls: type[T], d: Mapping[str, Any]) -> T:
    """Rebuild a (possibly nested) config dataclass from a JSON dict, checking every field's type.

    Field types come from ``typing.get_type_hints(cls)``; supported: nested dataclasses,
    ``tuple[X, ...]`` / ``tuple[X, Y]`` (from JSON lists), ``list[X]``, ``dict[str, X]``,
    ``Literal[...]``, ``str``, ``int`` (not a bool, not a float such as ``1e12``), ``float`` (ints are
    accepted; NaN is not), ``bool``, ``None``, ``X | None`` and other unions (first arm that fits), enums,
    ``Path`` and ``Any``. Keys absent from ``d`` take the field's default.

    Every value given is then checked against the limits its dataclass declares (:func:`config_limits`:
    ``LIMITS = {"channels": (1, 512), "len(channel_mult)": (1, 8), ...}``, a ClassVar), before the dataclass
    (or anything the config would build) exists: a hostile ``config.json`` (``T = 10**12``,
    ``channels = 10**7``) fails in microseconds with one line naming the field, instead of allocating.
    A ValueError from the dataclass's own ``__post_init__`` is prefixed with the field path, so the file
    is named too.

    Args:
        cls: the config dataclass (e.g. a model family's ``config_cls``).
        d: the dict, e.g. ``json.load``-ed from ``config.json``.
    Returns:
        ``cls(**converted)``.
    Raises:
        ValueError: on an unknown key (naming the key and ``cls``), a missing required field, a
            value of the wrong type / outside a ``Literal`` / outside its declared limits, or one the
            dataclass's ``__post_init__`` refuses (naming the field path, e.g. ``DDPMConfig.unet.channels``).
        TypeError: if ``cls`` is not a dataclass.
    """
    return _from_dict(cls, d, cls.__qualname__ if isinstance(cls, type) else str(cls))


def config_limits(cls: type) -> dict[str, tuple[float, float]]:
    """The limits a config dataclass declares for its fields, merged over its bases (a subclass's entries win).

    A config class declares ``LIMITS: ClassVar[dict[str, tuple[lo, hi]]]``; each key is a field name, whose value
    (or, for a tuple field, each item) must lie in ``[lo, hi]``, or ``"len(field)"``, bounding the number of items.
    :func:`config_from_dict` enforces them; the family chooses them (it knows what its sizes cost), so no family
    is named here.

        >>> @dataclasses.dataclass(frozen=True)
        ... class Net:
        ...     LIMITS: typing.ClassVar = {"width": (1, 4096)}
        ...     width: int = 64
        >>> config_limits(Net)
        {'width': (1, 4096)}
    """
    merged: dict[str, tuple[float, float]] = {}
    for klass in reversed(cls.__mro__):
        merged.update(vars(klass).get("LIMITS", {}))
    return merged


def _short(v: Any) -> str:
    """A number as a message shows it: ``10**12`` as ``1e+12``, small ones as they are."""
    if isinstance(v, int) and abs(v) >= 10**9:
        return f"{v:.3g}"
    return repr(v)


def _check_limits(cls: type, kwargs: Mapping[str, Any], where: str) -> None:
    """Raise a ValueError naming the first given value outside :func:`config_limits` ``(cls)``."""
    for key, (lo, hi) in config_limits(cls).items():
        is_len = key.startswith("len(") and key.endswith(")")
        name = key[4:-1] if is_len else key
        value = kwargs.get(name)
        if value is None:
            continue
        rule = f"{cls.__qualname__} takes {lo} ≤ {key} ≤ {hi}"
        if is_len:
            if not lo <= len(value) <= hi:
                raise ValueError(f"{where}.{name} has {len(value)} items, out of range: {rule}")
            continue
        for i, v in enumerate(value) if isinstance(value, (tuple, list)) else [(None, value)]:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not lo <= v <= hi:
                at = f"{where}.{name}" + ("" if i is None else f"[{i}]")
                raise ValueError(f"{at}={_short(v)} is out of range: {rule}")


def _from_dict(cls: type, d: Any, where: str) -> Any:
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"config_from_dict needs a dataclass type, got {cls!r}")
    if not isinstance(d, Mapping):
        raise ValueError(f"{where}: expected a JSON object for config {cls.__qualname__}, "
                         f"got {type(d).__name__} {d!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} for config {cls.__qualname__}; "
                         f"its fields are {sorted(fields)} (was config.json written by another "
                         "version of genmodels?)")
    missing = [n for n, f in fields.items() if n not in d and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{where}: config {cls.__qualname__} is missing required field(s) {missing}")
    kwargs = {name: _convert(hints[name], value, f"{where}.{name}") for name, value in d.items()}
    _check_limits(cls, kwargs, where)
    try:
        return cls(**kwargs)
    except ValueError as e:  # the dataclass's own __post_init__: say where, so the file is named
        raise ValueError(f"{where}: {e}") from None


def _convert(tp: Any, value: Any, where: str) -> Any:
    """``value`` (from JSON) as type ``tp``, or a ValueError naming ``where``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if tp is type(None) or tp is None:
        if value is not None:
            raise ValueError(f"{where}: expected null, got {value!r}")
        return None
    if origin is Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        errors = []
        for arm in args:
            if arm is type(None):
                continue
            try:
                return _convert(arm, value, where)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(f"{where}: {value!r} fits none of {tp}: " + "; ".join(errors))
    if origin is Literal:
        for a in args:
            if value == a and type(value) is type(a):
                return a
        raise ValueError(f"{where}: {value!r} is not one of {list(args)}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _from_dict(tp, value, where)
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if not args:
            return tuple(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} items, got {len(value)}: {value!r}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected an object, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {k: _convert(vt, v, f"{where}[{k!r}]") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        if value != value:  # NaN: never a setting (±inf may be one, e.g. "no limit")
            raise ValueError(f"{where}: expected a number, got NaN")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ValueError(f"{where}: {value!r} is not one of {[m.value for m in tp]}") from None
    if tp is Path:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a path string, got {value!r}")
        return Path(value)
    raise ValueError(f"{where}: unsupported config field type {tp!r}")


# ----------------------------------------------------------------------------------------------
# RunConfig


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to rebuild a run's model, saved as ``config.json``.

    Attributes:
        model: registry name of the model family (e.g. ``"ddpm"``), a key of ``MODELS``.
        model_config: that family's frozen config dataclass instance (``MODELS.get(model).config_cls``).
        data: the dataset name as the user typed it (e.g. ``"fashion-mnist"``, ``"npz:x.npz"``).
        spec: the :class:`DataSpec` the model was built for.
        train: the :class:`~genmodels.train_config.TrainConfig` of the run, or None (e.g. an exported model).
        data_source: where the data is, from any working folder (:func:`genmodels.data.resolve_source`:
            ``"folder:/abs/faces?alpha=composite&background=white"``; embedded names unchanged), or None
            (a run written before it was stored: ``data`` is loaded as typed).
        data_fingerprint: what the data looked like (:class:`genmodels.data.DataFingerprint`: event shape,
            train/test sizes, levels, a hash of a fixed sample of the values), or None.
        data_quantization: for series the loader quantized (``npz:FILE?layout=sequence``, ``wav:DIR``), how
            levels map back to the user's values (:class:`genmodels.data.Quantization`), else None.
    """

    model: str
    model_config: Any
    data: str
    spec: DataSpec
    train: TrainConfig | None = None
    data_source: str | None = None
    data_fingerprint: DataFingerprint | None = None
    data_quantization: Quantization | None = None

    @classmethod
    def for_dataset(cls, model: str, model_config: Any, data: str, dataset: Dataset,
                    train: TrainConfig | None = None) -> RunConfig:
        """The config of a new run on ``dataset`` (loaded from the name ``data`` in the current working folder),
        with the data's resolved source, fingerprint and quantization."""
        return cls(model=model, model_config=model_config, data=data, spec=dataset.spec, train=train,
                   data_source=resolve_source(data), data_fingerprint=DataFingerprint.of(dataset),
                   data_quantization=dataset.quantization)

    def load_data(self, data: str | None = None) -> Dataset:
        """The run's dataset, or another one to evaluate the run on.

        Without ``data``: loaded through :attr:`data_source` (so a relative ``folder:faces`` is found from any
        working folder) and checked against :attr:`data_fingerprint`. With ``data`` (``evaluate --data OTHER``,
        out-of-distribution): that dataset, checked only for the event shape and levels the model needs.

        Raises:
            DataError: (a ValueError) the data changed since training (what changed, in one line), the stored data
                cannot be loaded, or ``data`` has another event shape or number of levels.
        """
        from .data import DataError, load_dataset, source_location

        def shape(t: tuple[int, ...]) -> str:
            """An event shape as ``(3,32,32)``."""
            return f"({t[0]},)" if len(t) == 1 else "(" + ",".join(map(str, t)) + ")"

        if data is not None:
            ds = load_dataset(data)
            bad = []
            if tuple(ds.spec.event_shape) != tuple(self.spec.event_shape):
                bad.append(f"event shape {shape(tuple(ds.spec.event_shape))}, the run's is "
                           f"{shape(tuple(self.spec.event_shape))}")
            if ds.spec.n_bins != self.spec.n_bins:
                bad.append(f"{ds.spec.n_bins or 'continuous'} levels, the run's {self.spec.n_bins or 'continuous'}")
            if bad:
                raise DataError(f"--data {data!r} does not fit this {self.model!r} run trained on {self.data!r}: "
                                f"{'; '.join(bad)}; evaluate on data of the same shape and levels")
            if ds.quantization != self.data_quantization and (ds.quantization or self.data_quantization):
                logger.warning("--data %r is quantized differently from the run's data (%s against %s): its levels "
                               "mean other values", data, ds.quantization and ds.quantization.describe(),
                               self.data_quantization and self.data_quantization.describe())
            return ds
        if self.data_source is None:  # a run written before the data's identity was stored
            return load_dataset(self.data)
        try:
            ds = load_dataset(self.data_source)
        except DataError as e:
            raise DataError(f"{e} (the data this {self.model!r} run was trained on, {self.data!r}; evaluate another "
                            f"dataset explicitly with --data)") from None
        if self.data_fingerprint is not None:
            changes = self.data_fingerprint.changes(DataFingerprint.of(ds))
            if changes:
                raise DataError(f"{source_location(self.data_source)} changed since training ({', '.join(changes)}); "
                                f"evaluate another dataset explicitly with --data, or retrain")
        # named as at training (the source spells out every option: folder:/abs/faces?alpha=composite&…), so that a
        # resumed run's spec is the one its config.json holds
        return dataclasses.replace(ds, spec=dataclasses.replace(ds.spec, name=self.spec.name))

    def to_json(self) -> dict:
        """The JSON dict written to ``config.json``; inverse of :meth:`from_json`. The data's source, fingerprint
        and quantization are written when set."""
        d = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "model": self.model,
            "model_config": config_to_dict(self.model_config),
            "data": self.data,
            "spec": self.spec.to_json(),
            "train": None if self.train is None else config_to_dict(self.train),
        }
        if self.data_source is not None:
            d["data_source"] = self.data_source
        if self.data_fingerprint is not None:
            d["data_fingerprint"] = self.data_fingerprint.to_json()
        if self.data_quantization is not None:
            d["data_quantization"] = self.data_quantization.to_json()
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any], *, source: str = "config.json") -> RunConfig:
        """Rebuild from :meth:`to_json`'s dict, the model config through the ``MODELS`` registry. ``data_source``,
        ``data_fingerprint`` and ``data_quantization`` are optional (files written before them load).

        Args:
            source: where ``d`` came from, for error messages.
        Raises:
            ValueError: unknown model name (lists the registered ones), unknown/missing keys or
                badly typed values, or a file of another format version.
        """
        known = {"format", "format_version", "model", "model_config", "data", "spec", "train", "data_source",
                 "data_fingerprint", "data_quantization"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}; expected {sorted(known)}")
        version = d.get("format_version", _FORMAT_VERSION)
        if version != _FORMAT_VERSION:
            raise ValueError(f"{source}: format_version {version} is not supported by this "
                             f"genmodels (it reads version {_FORMAT_VERSION}); upgrade genmodels")
        for key in ("model", "model_config", "data", "spec"):
            if key not in d:
                raise ValueError(f"{source}: missing key {key!r}")
        entry = _model_entry(d["model"], source)
        try:
            spec = DataSpec.from_json(d["spec"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"{source}: bad 'spec' entry {d['spec']!r}: {e}") from None
        data_source = d.get("data_source")
        if data_source is not None and not isinstance(data_source, str):
            raise ValueError(f"{source}: data_source must be a string, got {data_source!r}")
        try:
            fingerprint = (None if d.get("data_fingerprint") is None
                           else DataFingerprint.from_json(d["data_fingerprint"]))
            quantization = (None if d.get("data_quantization") is None
                            else Quantization.from_json(d["data_quantization"]))
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None
        train_d = d.get("train")
        return cls(
            model=d["model"],
            model_config=_from_dict(entry.config_cls, d["model_config"], f"{source}: model_config"),
            data=d["data"],
            spec=spec,
            train=None if train_d is None else _from_dict(TrainConfig, train_d, f"{source}: train"),
            data_source=data_source,
            data_fingerprint=fingerprint,
            data_quantization=quantization,
        )


def _model_entry(name: str, source: str):
    if name not in MODELS:
        known = ", ".join(MODELS.names()) or "(none registered yet)"
        raise ValueError(f"{source}: model {name!r} is not registered; known models: {known}. "
                         "Import the module that registers it (e.g. `import genmodels`) first.")
    return MODELS.get(name)


# ----------------------------------------------------------------------------------------------
# Weights


def _state_dict_bytes(module: nn.Module, metadata: Mapping[str, str] | None) -> bytes:
    """``module.state_dict()`` as safetensors bytes, on CPU, contiguous, tied tensors saved once.

    Entries that are the very same tensor view (tied weights) are saved under the first name and
    listed in the metadata key ``genmodels.aliases``; entries that merely share memory are copied.
    """
    tensors: dict[str, Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}  # (storage ptr, offset, shape, stride, dtype) -> kept name
    seen_storages: set[int] = set()
    for name, t in module.state_dict(keep_vars=False).items():
        t = t.detach()
        if t.numel() == 0:
            tensors[name] = t.cpu().contiguous()
            continue
        ptr = t.untyped_storage().data_ptr()
        key = (t.device, ptr, t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
        if key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        shares = (t.device, ptr) in seen_storages
        seen_storages.add((t.device, ptr))
        # A view of a bigger storage, or one sharing memory with another entry, becomes its own copy.
        full = t.untyped_storage().nbytes() == t.numel() * t.element_size()
        t = t.cpu()
        tensors[name] = t.clone() if (shares or not full or not t.is_contiguous()) else t.contiguous()
    meta = dict(metadata or {})
    meta.setdefault("format", "pt")
    if aliases:
        meta[_ALIASES_KEY] = json.dumps(aliases, sort_keys=True)
    return safetensors.torch.save(tensors, metadata=meta)


def _load_state_dict_file(path: Path, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Read a safetensors file written by :func:`save_pretrained`, restoring tied aliases.

    Raises:
        ValueError: the file is not a valid safetensors file (truncated, zero bytes, random or another format),
            or its alias table is damaged; the message names the file and the fix.
    """
    damaged = f"{path} is not a valid safetensors file (truncated or corrupt: {{}}); retrain or restore it from a copy"
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        sd = safetensors.torch.load_file(str(path), device=str(torch.device(device)))
    except safetensors.SafetensorError as e:
        raise ValueError(damaged.format(str(e).replace("Error while deserializing header: ", ""))) from None
    try:
        aliases = json.loads(meta.get(_ALIASES_KEY, "{}"))
        for alias, kept in aliases.items():
            sd[alias] = sd[kept]
    except (ValueError, KeyError, AttributeError, TypeError) as e:
        raise ValueError(damaged.format(f"bad {_ALIASES_KEY} metadata: {e!r}")) from None
    return sd


def _mismatch(model: nn.Module, state: Mapping[str, Tensor]) -> str:
    """What differs between a model's state_dict and ``state``, in one line: counts and the first example."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    parts = []
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} tensor(s) of another shape, e.g. {k}: file {list(state[k].shape)}, "
                     f"model {list(own[k].shape)}")
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
    return "; ".join(parts) or "the tensors differ"


def save_pretrained(run_dir: str | os.PathLike, model: nn.Module, run_config: RunConfig,
                    ema_model: nn.Module | None = None, *,
                    metadata: Mapping[str, str] | None = None) -> Path:
    """Write a loadable run folder: ``config.json``, ``model.safetensors`` and ``ema.safetensors``.

    Each file is written atomically (temp file in the same folder, fsync, ``os.replace``). Weights
    go first and ``config.json`` last. The folder is created if needed.

    Args:
        run_dir: the run folder.
        model: the raw (not DDP-wrapped) model; its ``state_dict`` is saved.
        run_config: names the registered model family and holds its config (see :class:`RunConfig`).
        ema_model: EMA copy of ``model`` (same architecture), saved as ``ema.safetensors``.
        metadata: extra ``str -> str`` entries for the safetensors headers (e.g. ``{"step": "1000"}``).
    Returns:
        ``run_dir`` as a Path.
    Raises:
        ValueError: if ``run_config.model`` is not registered in ``MODELS`` or ``model_config`` is
            not an instance of that family's ``config_cls`` (the folder could not be loaded back).
    """
    run_dir = Path(run_dir)
    entry = _model_entry(run_config.model, "save_pretrained")
    if not isinstance(run_config.model_config, entry.config_cls):
        raise ValueError(f"save_pretrained: model_config is a {type(run_config.model_config).__name__}, "
                         f"but model {run_config.model!r} is configured by "
                         f"{entry.config_cls.__name__}")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(run_dir / WEIGHTS_NAME, _state_dict_bytes(model, metadata))
    if ema_model is not None:
        atomic_write_bytes(run_dir / EMA_WEIGHTS_NAME, _state_dict_bytes(ema_model, metadata))
    atomic_write_text(run_dir / CONFIG_NAME, json.dumps(run_config.to_json(), indent=2) + "\n")
    return run_dir


# ----------------------------------------------------------------------------------------------
# Loading


def _check_run_dir(run_dir: Path) -> Path:
    if not run_dir.exists():
        raise FileNotFoundError(f"run folder {run_dir} does not exist; pass the folder a training "
                                "run wrote (its --out)")
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is a file, not a run folder; pass the folder that "
                                f"holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    config = run_dir / CONFIG_NAME
    if not config.is_file():
        raise FileNotFoundError(f"{run_dir} has no {CONFIG_NAME}, so it is not a genmodels run "
                                "folder (or its run stopped before the first checkpoint); pass the "
                                "folder a training run wrote (its --out)")
    return config


def load_run_config(run_dir: str | os.PathLike) -> RunConfig:
    """Read ``run_dir/config.json`` as a :class:`RunConfig`.

    Raises:
        FileNotFoundError: the folder or its ``config.json`` is missing.
        ValueError: the file is not valid JSON, names an unregistered model, or has unknown or
            badly typed keys (the message names the file and the key).
    """
    config = _check_run_dir(Path(run_dir))
    if config.stat().st_size > _MAX_CONFIG_BYTES:
        raise ValueError(f"{config} is {config.stat().st_size / 2**20:.0f} MiB, too large to be a genmodels config "
                         f"(they are a few KiB); the file is damaged or not a run's: restore it from a copy")
    try:
        d = json.loads(config.read_text(encoding="utf-8"))
    except RecursionError:
        raise ValueError(f"{config} is nested too deeply to be a genmodels config; the file is damaged or not a "
                         "run's: restore it from a copy") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4300 digits
        raise ValueError(f"{config} is not valid JSON ({e}); the file is damaged: restore it from a copy") from None
    if not isinstance(d, dict):
        raise ValueError(f"{config}: expected a JSON object, got {type(d).__name__}")
    try:
        run_config = RunConfig.from_json(d, source=str(config))
    except (TypeError, AttributeError, KeyError, RecursionError) as e:  # e.g. a list where a name should be
        raise ValueError(f"{config} is not a genmodels config ({type(e).__name__}: {e}); restore it from a "
                         "copy") from None
    _check_spec(run_config.spec, f"{config}: spec")
    return run_config


_MAX_CONFIG_BYTES = 2**24
"""A run's config.json is a few KiB; a bigger one is refused before it is read."""

_SPEC_LIMITS = {"event dimension": (1, 2**16), "event size": (1, 2**26), "rank": (1, 3), "n_bins": (2, 2**16),
                "sample_rate": (1, 10**7)}
"""What a :class:`DataSpec` read from a file may say: events of rank 1–3 (vectors, sequences, images) with at most
2**26 values (a 4096×4096 RGB image is 2**25.6), up to 2**16 levels, audio up to 10 MHz. Larger ones would make the
models built from it (and every sample) allocate without bound."""


def _check_spec(spec: DataSpec, where: str) -> None:
    """Raise a ValueError naming ``where`` when a spec read from a file is badly typed or outside
    :data:`_SPEC_LIMITS`."""
    def ok(key: str, v: Any) -> bool:
        """Whether the integer ``v`` lies in the limits of ``key``."""
        lo, hi = _SPEC_LIMITS[key]
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

    shape = spec.event_shape
    if not (isinstance(shape, tuple) and ok("rank", len(shape)) and all(ok("event dimension", s) for s in shape)
            and ok("event size", math.prod(shape))):
        lo, hi = _SPEC_LIMITS["event size"]
        raise ValueError(f"{where}.event_shape={list(shape) if isinstance(shape, tuple) else shape!r} is out of "
                         f"range: 1 to 3 positive integers whose product is at most {hi} (2**26)")
    for key in ("n_bins", "sample_rate"):
        v = getattr(spec, key)
        if v is not None and not ok(key, v):
            lo, hi = _SPEC_LIMITS[key]
            raise ValueError(f"{where}.{key}={_short(v)} is out of range: an integer in [{lo}, {hi}], or null")
    vr = spec.value_range  # (-inf, inf) for unbounded continuous data
    if not (isinstance(vr, tuple) and len(vr) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                          for v in vr) and vr[0] < vr[1]):
        raise ValueError(f"{where}.value_range={vr!r} is out of range: two numbers, low < high")
    if not isinstance(spec.name, str):
        raise ValueError(f"{where}.name={spec.name!r}: expected a string")


def load_train_state(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a ``train_state.pt`` (``torch.load(weights_only=True)``: no pickled code runs), or a one-line error.

    Args:
        path: the file. required: keys the state must have.
    Returns:
        the state dict.
    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is truncated, corrupt or not a torch file (``UnpicklingError``, a zip error, an
            ``EOFError``...), holds something other than a dict, or lacks a ``required`` key; the message names the
            file and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the run has no training state to resume; start a new run "
                                "(another --out)")
    damaged = (f"{path} is not a valid training state, so the run cannot resume ({{}}); restore it from a copy, or "
               f"start a new run (another --out): this run's weights stay loadable for sample and evaluate")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise  # the disk, not the file: the CLI names the path and the errno
    except Exception as e:  # UnpicklingError, RuntimeError (zip), EOFError, ValueError, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, pickle.UnpicklingError):  # torch's text is a paragraph about weights_only
            first = "not a torch checkpoint"
        raise ValueError(damaged.format(f"truncated or corrupt: {type(e).__name__}: {first[:160]}")) from None
    if not isinstance(state, dict):
        raise ValueError(damaged.format(f"it holds a {type(state).__name__}, not a dict"))
    missing = [k for k in required if k not in state]
    if missing:
        raise ValueError(damaged.format(f"it lacks {', '.join(missing)}: written by another version of genmodels?"))
    return state


def from_pretrained(run_dir: str | os.PathLike, *, ema: bool = True, map_location: str | torch.device = "cpu",
                    run_config: RunConfig | None = None) -> tuple[GenerativeModel, RunConfig]:
    """Rebuild a run's model from ``config.json`` and load its weights (no pickled code runs).

    The model is built through the registry (``MODELS.get(name).build(config, spec)``), then loaded
    (strictly) with ``ema.safetensors`` when ``ema`` is True and that file exists, else with
    ``model.safetensors``; it is returned in eval mode on ``map_location``.

    Args:
        run_dir: a folder written by :func:`save_pretrained` (e.g. a training run's ``--out``).
        ema: prefer the EMA weights (recommended for sampling and evaluation).
        map_location: device for the returned model.
        run_config: the run's config when the caller has read it already (:func:`load_run_config`), so that
            ``config.json`` is read once.
    Returns:
        ``(model, run_config)``.
    Raises:
        FileNotFoundError: missing folder, ``config.json`` or ``model.safetensors``.
        ValueError: unregistered model name, bad ``config.json``, or weights that do not match the
            model the config builds.
    """
    run_dir = Path(run_dir)
    run_config = run_config or load_run_config(run_dir)
    weights = run_dir / EMA_WEIGHTS_NAME
    if not (ema and weights.is_file()):
        weights = run_dir / WEIGHTS_NAME
        if ema:
            logger.info("%s has no %s; loading the raw weights", run_dir, EMA_WEIGHTS_NAME)
    if not weights.is_file():
        raise FileNotFoundError(f"{run_dir} has {CONFIG_NAME} but no {WEIGHTS_NAME}: the run stopped "
                                "before writing weights; resume it or train again")
    state = _load_state_dict_file(weights)  # before the build: a damaged file fails fast
    model = MODELS.get(run_config.model).build(run_config.model_config, run_config.spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise ValueError(f"{weights} does not match the {run_config.model!r} model that {run_dir / CONFIG_NAME} "
                         f"builds ({_mismatch(model, state)}): the config belongs to another run or the weights to "
                         f"another config; restore the run's own {CONFIG_NAME}, or retrain") from None
    return model.to(map_location).eval(), run_config
