"""Frozen records, made without attrs: every value type of isolate is one.

``import attrs`` costs 12-17 ms (``inspect``, ``platform`` and the classes attrs builds for
itself), and every class attrs makes costs 0.5-0.9 ms more, most of it one ``compile()`` of
the methods it generates. A plain ``isolate run -- /bin/true`` built 24 such classes before it
ran anything, and ``isolate run --rm IMAGE`` 27 more. Here nothing is generated or compiled:
``__init__``, ``__eq__``, ``__hash__`` and ``__repr__`` are shared functions that walk the
class's fields, so making a class costs microseconds (a class made by the hundred per start,
like :class:`isolate.lowlevel.Op`, writes its ``__init__`` out).

To the type checker these *are* attrs classes (``record`` is ``attrs.frozen``, ``field`` is
``attrs.field`` ... under ``TYPE_CHECKING``), so mypy's attrs plugin checks every call,
converters included. At run time they keep the attrs protocol that isolate and its users rely
on: ``__attrs_attrs__`` holds fields with ``name``, ``alias``, ``default``, ``init`` ..., so
``attrs.fields``, ``attrs.has``, ``attrs.evolve`` and ``attrs.asdict`` work on them as on attrs
classes, and :func:`evolve`, :func:`fields` and :func:`asdict` here do the same (for attrs
classes too) without importing attrs.

What a record does, as ``attrs.frozen`` does: fields from the class's annotations in order,
each with a default, a ``factory``, a ``converter`` (applied to the given value or the
default) and a ``validator`` (``validator(instance, field, value)``, or a list of them, run
after every field is set); then ``__attrs_post_init__``. Instances refuse assignment
(:class:`FrozenInstanceError`), compare equal field by field when their classes are the same,
and hash (cached with ``cache_hash=True``); with ``eq=False`` they compare and hash as
themselves. ``mutable`` makes a record that can be assigned to and is not hashable, as
``attrs.define`` does (without validating assignments).
"""

from __future__ import annotations

from _operator import itemgetter  # (operator's own: its module is ~0.3 ms to load)

from isolate._typing import TYPE_CHECKING

__all__ = ["FrozenInstanceError", "asdict", "evolve", "field", "fields", "in_", "instance_of",
           "mutable", "optional", "record"]

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, TypeVar

    _C = TypeVar("_C", bound=type)


class FrozenInstanceError(AttributeError):
    """An assignment to a field of a frozen record (an ``AttributeError``, as attrs's is)."""


class _Nothing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOTHING"

    def __bool__(self) -> bool:
        return False


NOTHING: Any = _Nothing()
_HASH = "__record_hash"
_CLASSVAR = ("ClassVar", "typing.ClassVar", "t.ClassVar", "typing_extensions.ClassVar")


class Field:
    """One field of a record, with the attributes of an ``attrs.Attribute`` that readers use."""

    __slots__ = ("alias", "converter", "default", "eq", "factory", "hash", "inherited", "init",
                 "kw_only", "metadata", "name", "order", "repr", "type", "validator")

    def __init__(self, *, default: Any = NOTHING, factory: Callable[[], Any] | None = None,
                 converter: Callable[[Any], Any] | None = None,
                 validator: Callable[[Any, Any, Any], Any] | None = None, eq: bool = True,
                 hash: bool | None = None, repr: bool = True) -> None:
        if factory is not None and default is not NOTHING:
            raise ValueError("a field takes a default or a factory, not both")
        self.name = self.alias = ""
        self.default = default
        self.factory = factory
        self.converter = converter
        self.validator = _all_of(validator) if isinstance(validator, list | tuple) else validator
        self.eq = eq
        self.hash = eq if hash is None else hash
        self.repr = repr
        self.init = True
        self.kw_only = False
        self.inherited = False
        self.order = False
        self.type: Any = None
        self.metadata: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, default={self.default!r})"


def _all_of(validators: Sequence[Callable[[Any, Any, Any], Any]]
            ) -> Callable[[Any, Any, Any], None]:
    """One validator running ``validators`` in order (a list given as ``validator=``)."""
    def check(inst: Any, f: Any, value: Any) -> None:
        for validator in validators:
            validator(inst, f, value)
    return check


class _Fields(tuple):  # type: ignore[type-arg]
    """A record's fields in order, also by name (``fields(Op).kind``), as attrs gives them."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Field:
        for f in self:
            if f.name == name:
                return f  # type: ignore[no-any-return]
        raise AttributeError(name)


def _field(*, default: Any = NOTHING, factory: Callable[[], Any] | None = None,
           converter: Callable[[Any], Any] | None = None,
           validator: Callable[[Any, Any, Any], Any] | None = None, eq: bool = True,
           hash: bool | None = None, repr: bool = True) -> Any:
    return Field(default=default, factory=factory, converter=converter, validator=validator,
                 eq=eq, hash=hash, repr=repr)


def _fields(cls: type) -> _Fields:
    if not isinstance(cls, type):
        cls = type(cls)
    found = getattr(cls, "__attrs_attrs__", None)
    if found is None:
        raise TypeError(f"{cls.__qualname__} is not a record or attrs class")
    return found  # type: ignore[no-any-return]


def _evolve(inst: Any, /, **changes: Any) -> Any:
    cls = type(inst)
    for f in _fields(cls):
        if f.init and f.alias not in changes:
            changes[f.alias] = getattr(inst, f.name)
    return cls(**changes)


def _asdict(inst: Any, *, recurse: bool = True) -> dict[str, Any]:
    """The fields of ``inst`` by name, as ``attrs.asdict`` makes them: with ``recurse``, a
    record inside (also in a list, tuple, set or dict) becomes a dict, a collection a list."""
    out = {f.name: getattr(inst, f.name) for f in _fields(type(inst))}
    if recurse:
        for name, value in out.items():
            out[name] = _asdict_value(value)
    return out


def _asdict_value(value: Any) -> Any:
    if getattr(type(value), "__attrs_attrs__", None) is not None:
        return _asdict(value)
    if isinstance(value, tuple | list | set | frozenset):
        return [_asdict_value(v) for v in value]
    if isinstance(value, dict):
        return {_asdict_value(k): _asdict_value(v) for k, v in value.items()}
    return value


def _collect(cls: type) -> _Fields:
    inherited = {f.name: f for f in getattr(cls, "__attrs_attrs__", ())}
    own: list[Field] = []
    # The class's own annotations, unevaluated (inspect.get_annotations would load inspect).
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
        if isinstance(annotation, str) and annotation.startswith(_CLASSVAR):
            continue
        value = cls.__dict__.get(name, NOTHING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name, f.alias, f.type = name, name.lstrip("_"), annotation
        if name in cls.__dict__:
            delattr(cls, name)
        inherited.pop(name, None)
        own.append(f)
    for f in inherited.values():
        f.inherited = True
    out = [*inherited.values(), *own]
    defaulted = False
    for f in out:
        if f.default is NOTHING and f.factory is None:
            if defaulted:
                raise ValueError(f"{cls.__qualname__}: no mandatory field ({f.name!r}) is "
                                 "allowed after a field with a default or factory")
        else:
            defaulted = True
    return _Fields(out)


def _make_init(cls: type, all_fields: _Fields) -> Callable[..., None]:
    specs = tuple((f.name, f.alias, f.default, f.factory, f.converter) for f in all_fields)
    checks = tuple(f for f in all_fields if f.validator is not None)
    post_init = getattr(cls, "__attrs_post_init__", None)
    n = len(specs)
    qual = cls.__qualname__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        d = self.__dict__
        if args:
            if len(args) > n:
                raise TypeError(f"{qual}.__init__() takes {n} positional arguments but "
                                f"{len(args)} were given")
            for spec, value in zip(specs, args, strict=False):
                if spec[1] in kwargs:
                    raise TypeError(f"{qual}.__init__() got multiple values for argument "
                                    f"{spec[1]!r}")
                kwargs[spec[1]] = value
        pop = kwargs.pop
        for name, alias, default, factory, converter in specs:
            value = pop(alias, NOTHING)
            if value is NOTHING:
                if factory is not None:
                    value = factory()
                elif default is NOTHING:
                    raise TypeError(f"{qual}.__init__() missing 1 required argument: {alias!r}")
                else:
                    value = default
            d[name] = value if converter is None else converter(value)
        if kwargs:
            raise TypeError(f"{qual}.__init__() got an unexpected keyword argument "
                            f"{next(iter(kwargs))!r}")
        for f in checks:
            f.validator(self, f, d[f.name])
        if post_init is not None:
            post_init(self)

    __init__.__qualname__ = f"{qual}.__init__"
    __init__.__doc__ = f"Make a {cls.__name__} (its fields are the keywords)."
    return __init__


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r} of a frozen "
                              f"{type(self).__qualname__}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r} of a frozen "
                              f"{type(self).__qualname__}")


def _getstate(self: Any) -> dict[str, Any]:
    # The cached hash is of this process's string hashes: a copy elsewhere hashes anew.
    state = dict(self.__dict__)
    state.pop(_HASH, None)
    return state


class _LazySignature:
    """``cls.__signature__``, made from the fields when asked (inspect is not loaded before)."""

    def __get__(self, inst: Any, cls: type) -> Any:
        import inspect

        params = [inspect.Parameter(f.alias, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    default=(inspect.Parameter.empty if f.default is NOTHING
                                             and f.factory is None else
                                             f.default if f.factory is None else NOTHING),
                                    annotation=f.type)
                  for f in _fields(cls)]
        return inspect.Signature(params, return_annotation=None)


def _getter(names: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    """The values of ``names`` from an instance's dict, in one C call (a tuple, or one value)."""
    return itemgetter(*names) if names else (lambda d: ())


def _build(cls: _C, *, frozen: bool, cache_hash: bool, eq: bool = True) -> _C:
    all_fields = _collect(cls)
    names = tuple(f.name for f in all_fields)
    shown = tuple(f.name for f in all_fields if f.repr)  # repr=False: a password, a lock
    eq_values = _getter(tuple(f.name for f in all_fields if f.eq))
    hash_values = _getter(tuple(f.name for f in all_fields if f.hash))
    qual = cls.__qualname__.rsplit(">.", 1)[-1]
    made: dict[str, Any] = {"__attrs_attrs__": all_fields, "__match_args__": names,
                            "__signature__": _LazySignature()}
    if "__init__" not in cls.__dict__:
        made["__init__"] = _make_init(cls, all_fields)

    def __repr__(self: Any) -> str:
        d = self.__dict__
        return f"{qual}({', '.join(f'{n}={d[n]!r}' for n in shown)})"

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return eq_values(self.__dict__) == eq_values(other.__dict__)  # type: ignore[no-any-return]

    def __ne__(self: Any, other: object) -> bool:
        result = __eq__(self, other)
        return result if result is NotImplemented else not result

    def __replace__(self: Any, /, **changes: Any) -> Any:
        return _evolve(self, **changes)

    for method in (__repr__, __eq__, __ne__, __replace__) if eq else (__repr__, __replace__):
        method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"
        made[method.__name__] = method
    if frozen:
        made.update(__setattr__=_frozen_setattr, __delattr__=_frozen_delattr,
                    __getstate__=_getstate)
    if not eq:  # compared and hashed as itself, as object does
        return _install(cls, made)
    if not frozen:
        made["__hash__"] = None
        return _install(cls, made)

    if cache_hash:
        def __hash__(self: Any) -> int:
            d = self.__dict__
            h = d.get(_HASH)
            if h is None:
                h = d[_HASH] = hash((qual, hash_values(d)))
            return h  # type: ignore[no-any-return]
    else:
        def __hash__(self: Any) -> int:
            return hash((qual, hash_values(self.__dict__)))

    __hash__.__qualname__ = f"{cls.__qualname__}.__hash__"
    made["__hash__"] = __hash__
    return _install(cls, made)


def _install(cls: _C, members: dict[str, Any]) -> _C:
    own = dict(cls.__dict__)  # as the class body wrote it, before any of these is set
    for name, value in members.items():
        # A method the class writes itself stays, as attrs's auto_detect keeps it (a class
        # that writes __eq__ gets __hash__ = None from Python: that is not its own).
        if name in ("__repr__", "__eq__", "__ne__") and name in own:
            continue
        if name == "__hash__" and own.get("__hash__") is not None:
            continue
        if name in ("__hash__", "__ne__") and "__eq__" in own:
            continue
        setattr(cls, name, value)
    return cls


def _record(maybe_cls: Any = None, *, cache_hash: bool = False, eq: bool = True) -> Any:
    def wrap(cls: type) -> type:
        return _build(cls, frozen=True, cache_hash=cache_hash, eq=eq)
    return wrap if maybe_cls is None else wrap(maybe_cls)


def _mutable(maybe_cls: Any = None) -> Any:
    def wrap(cls: type) -> type:
        return _build(cls, frozen=False, cache_hash=False)
    return wrap if maybe_cls is None else wrap(maybe_cls)


def _instance_of(kind: type | tuple[type, ...]) -> Callable[[Any, Any, Any], None]:
    def check(_inst: Any, f: Any, value: Any) -> None:
        if not isinstance(value, kind):
            raise TypeError(f"{f.name!r} must be {kind!r} (got {value!r} that is a "
                            f"{value.__class__!r}).")
    return check


def _in(options: Any) -> Callable[[Any, Any, Any], None]:
    def check(_inst: Any, f: Any, value: Any) -> None:
        if value not in options:
            raise ValueError(f"{f.name!r} must be in {options!r} (got {value!r})")
    return check


def _optional(validator: Callable[[Any, Any, Any], Any]) -> Callable[[Any, Any, Any], None]:
    def check(inst: Any, f: Any, value: Any) -> None:
        if value is not None:
            validator(inst, f, value)
    return check


if TYPE_CHECKING:
    # To mypy these are attrs's own, so its attrs plugin checks records as attrs classes.
    from attrs import asdict as asdict
    from attrs import define as mutable
    from attrs import evolve as evolve
    from attrs import field as field
    from attrs import fields as fields
    from attrs import frozen as record
    from attrs.validators import in_ as in_
    from attrs.validators import instance_of as instance_of
    from attrs.validators import optional as optional
else:
    record, mutable, field, fields, evolve = _record, _mutable, _field, _fields, _evolve
    asdict = _asdict
    instance_of, in_, optional = _instance_of, _in, _optional
