"""Typed registries: name -> component, for models, datasets and samplers.

A registry replaces string dispatch (``globals()[name]``, if/elif chains): :mod:`genmodels.families` fills the
model registry in one place, and an unknown name raises an error that lists the known ones.

    >>> r = Registry[int]("number")
    >>> r.register("one", 1)
    >>> r.get("one")
    1
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry", "ModelEntry"]


class Registry(Generic[T]):
    """A mapping from names to components of one kind, with clear errors.

    Args:
        kind: what is registered, used in error messages (e.g. ``"model"``).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> None:
        """Register ``item`` under ``name``.

        Raises:
            ValueError: if ``name`` is already registered.
        """
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item

    def get(self, name: str) -> T:
        """The component registered as ``name``.

        Raises:
            KeyError: if ``name`` is unknown; the message lists the known names.
        """
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise KeyError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


@dataclass(frozen=True)
class ModelEntry:
    """How to build one model family.

    Attributes:
        config_cls: the family's frozen config dataclass (saved as JSON in a run's ``config.json``).
        build: the family's model class (a :class:`~genmodels.core.GenerativeModel`), called as
            ``build(config, spec)``; its class attributes declare what the family can do (samplers, likelihood,
            evaluation options, description), readable before any model is built (:attr:`model_cls`).
        default_config: ``default_config(spec) -> config``, the family's preset for a dataset (what
            ``genmodels train NAME`` starts from); None means ``config_cls()``.
    """

    config_cls: type
    build: type
    default_config: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.build, type):
            raise TypeError(f"ModelEntry.build must be the model class (its class attributes are the family's "
                            f"capabilities), got {self.build!r}")

    @property
    def model_cls(self) -> Any:
        """The model class, whose class attributes are the family's capabilities."""
        return self.build

    @property
    def description(self) -> str:
        """One line describing the family (its class's ``description``)."""
        return self.build.description

    def preset(self, spec: Any) -> Any:
        """The config ``genmodels train`` starts from for data ``spec``."""
        return self.default_config(spec) if self.default_config is not None else self.config_cls()
