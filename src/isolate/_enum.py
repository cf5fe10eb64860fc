"""Enumerations made without :mod:`enum`: every enumeration of isolate is one.

``import enum`` costs ~1.5 ms, and each class :mod:`enum` makes ~0.1-0.7 ms more (its
metaclass runs Python code per member): the enumerations a plain ``isolate run -- /bin/true``
loads (the op kinds and flags of a plan, the namespace kinds, the capabilities) were ~4 ms of
a start that is ~30 ms in all. :mod:`signal` and :mod:`re` load enum too, so the start path
uses neither.

To the type checker these *are* the standard library's classes (``Enum``, ``IntEnum`` and
``IntFlag`` here are :mod:`enum`'s under ``TYPE_CHECKING``), so mypy's enum support checks
every use. At run time they behave as :mod:`enum`'s do (Python 3.11) in everything isolate
and its users rely on:

- members are instances of their class (of ``int`` too, for ``IntEnum`` and ``IntFlag``),
  with ``name`` and ``value``, in definition order; a second name for a value is an alias;
- ``Kind(value)`` finds the member (``ValueError`` if none does), ``Kind["NAME"]`` too
  (``KeyError``); ``Kind.__members__``, ``_value2member_map_``, iteration, ``len`` and ``in``;
- ``repr`` is ``<Kind.NAME: value>``; ``str`` is ``Kind.NAME``, or the number for the int
  kinds; an ``Enum`` member equals only itself, an int member equals its number;
- members pickle, copy and deep-copy as themselves; assigning to a member raises;
- ``IntFlag`` members combine with ``|``, ``&``, ``^`` and ``~`` into flags of their class
  (``<OpFlag.IN_ROOT|MKDIR: 3>``), any number is a flag of it, ``a in b`` tests bits.

Methods, properties, classmethods and nested classes in the class body stay what they are;
every other name is a member, but ``_sunder_``, ``__dunder__`` and ``_Class__private`` ones.
"""

from __future__ import annotations

from isolate._typing import TYPE_CHECKING

__all__ = ["Enum", "IntEnum", "IntFlag"]

if TYPE_CHECKING:
    from enum import Enum as Enum
    from enum import IntEnum as IntEnum
    from enum import IntFlag as IntFlag
else:
    _MappingProxy = type(type.__dict__)
    _NOT_MEMBERS = (staticmethod, classmethod, property, type)

    class _EnumType(type):
        """The metaclass: turns the public plain values of a class body into members."""

        def __new__(mcls, name, bases, namespace, **kwargs):
            private = f"_{name}__"
            members = [(key, value) for key, value in namespace.items()
                       if not (key[:1] == "_" == key[-1:] or key.startswith(private))
                       and not callable(value) and not isinstance(value, _NOT_MEMBERS)]
            for key, _ in members:
                del namespace[key]
            cls = super().__new__(mcls, name, bases, namespace, **kwargs)
            member_map: dict[str, object] = {}
            by_value: dict[object, object] = {}
            type.__setattr__(cls, "_member_map_", member_map)
            type.__setattr__(cls, "_member_names_", [])
            type.__setattr__(cls, "_value2member_map_", by_value)
            for key, value in members:
                member = by_value.get(value)
                if member is None:  # (an alias otherwise: the first name keeps the value)
                    member = cls._make_member(key, value)
                    by_value[value] = member
                    if cls._canonical(value):
                        cls._member_names_.append(key)
                member_map[key] = member
                type.__setattr__(cls, key, member)
            return cls

        def __call__(cls, value):
            if isinstance(value, cls):
                return value
            try:
                return cls._value2member_map_[value]
            except (KeyError, TypeError):
                pass
            member = cls._missing_(value)
            if member is None:
                raise ValueError(f"{value!r} is not a valid {cls.__qualname__}")
            return member

        def __getitem__(cls, name):
            return cls._member_map_[name]

        def __iter__(cls):
            return (cls._member_map_[name] for name in cls._member_names_)

        def __reversed__(cls):
            return (cls._member_map_[name] for name in reversed(cls._member_names_))

        def __len__(cls):
            return len(cls._member_names_)

        def __contains__(cls, value):
            if isinstance(value, cls):
                return True
            try:
                return value in cls._value2member_map_
            except TypeError:
                return False

        def __bool__(cls):
            return True

        @property
        def __members__(cls):
            return _MappingProxy(cls._member_map_)

        def __setattr__(cls, name, value):
            if name in cls.__dict__.get("_member_map_", ()):
                raise AttributeError(f"cannot reassign member {name!r}")
            super().__setattr__(name, value)

        def __delattr__(cls, name):
            if name in cls.__dict__.get("_member_map_", ()):
                raise AttributeError(f"cannot delete member {name!r}")
            super().__delattr__(name)

        def __repr__(cls):
            kind = "flag" if any(b.__name__ == "IntFlag" for b in cls.__mro__) else "enum"
            return f"<{kind} {cls.__name__!r}>"

        def __dir__(cls):
            return [*type.__dir__(cls), *cls._member_names_]

    class Enum(metaclass=_EnumType):
        """A member of an enumeration: ``name`` and ``value``, equal only to itself."""

        @classmethod
        def _make_member(cls, name, value):
            member = object.__new__(cls)
            member.__dict__.update(_name_=name, _value_=value)
            return member

        @classmethod
        def _missing_(cls, value):
            return None

        @classmethod
        def _canonical(cls, value):
            """Whether a member of ``value`` is iterated over (a flag's: one bit)."""
            return True

        @property
        def name(self):
            """The member's name."""
            return self.__dict__["_name_"]

        @property
        def value(self):
            """The member's value."""
            return self.__dict__["_value_"]

        def __setattr__(self, name, value):
            raise AttributeError(f"cannot set {name!r} of enumeration member {self!r}")

        def __repr__(self):
            return f"<{type(self).__name__}.{self.name}: {self.value!r}>"

        def __str__(self):
            return f"{type(self).__name__}.{self.name}"

        def __format__(self, spec):
            return format(str(self), spec)

        def __hash__(self):
            return hash(self.name)

        def __reduce_ex__(self, protocol):
            return type(self), (self.value,)

        def __copy__(self):
            return self

        def __deepcopy__(self, memo):
            return self

    class IntEnum(int, Enum):
        """A member that is also its number: equal to it, usable wherever an int is."""

        @classmethod
        def _make_member(cls, name, value):
            member = int.__new__(cls, value)
            member.__dict__.update(_name_=name, _value_=value)
            return member

        def __repr__(self):
            return f"<{type(self).__name__}.{self.name}: {int(self)!r}>"

        __str__ = int.__repr__
        __format__ = int.__format__
        __hash__ = int.__hash__
        __eq__ = int.__eq__
        __ne__ = int.__ne__

        def __reduce_ex__(self, protocol):
            return type(self), (int(self),)

    class IntFlag(IntEnum):
        """An int member whose bits combine: any number is a flag of the class. Iterating
        gives the one-bit members (as enum's does: not a 0 or a many-bit one)."""

        @classmethod
        def _canonical(cls, value):
            return value > 0 and value & (value - 1) == 0

        @classmethod
        def _missing_(cls, value):
            if not isinstance(value, int) or isinstance(value, bool):
                return None
            names = [name for name in cls._member_names_
                     if (bit := cls._member_map_[name]) and value & bit == bit]
            flag = cls._make_member("|".join(names) if names else None, value)
            return cls._value2member_map_.setdefault(value, flag)

        def __contains__(self, other):
            return int(other) & int(self) == int(other)

        def __or__(self, other):
            return type(self)(int(self) | int(other))

        def __and__(self, other):
            return type(self)(int(self) & int(other))

        def __xor__(self, other):
            return type(self)(int(self) ^ int(other))

        __ror__, __rand__, __rxor__ = __or__, __and__, __xor__

        def __invert__(self):
            every = 0
            for name in type(self)._member_names_:
                every |= int(type(self)._member_map_[name])
            return type(self)(every & ~int(self))
