"""What a codec is, how codecs chain, and the registry of codec names."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Literal

import attrs

from pystorage.errors import ConfigurationError


class BaseCodec:
    """Turns values into bytes and back.

    A *serializer* turns objects into bytes; a *transform* turns bytes into bytes
    (compression, signing). ``a | b`` chains codecs: ``a`` runs first on the way in
    (encode), last on the way out (decode).
    """

    #: The registered name of this codec; a chain's name is its stages' names, last first.
    name: ClassVar[str]
    kind: ClassVar[Literal["serializer", "transform"]]
    #: True for a transform that proves the bytes are genuine (``Signed``). It must be the
    #: last stage of a chain, so that on a read its check runs before any other stage
    #: decodes (a planted gzip bomb is refused before it is inflated).
    authenticates: ClassVar[bool] = False

    def encode(self, value: Any) -> bytes:
        """``value`` as bytes (a transform takes bytes too)."""
        raise NotImplementedError

    def decode(self, data: bytes) -> Any:
        """The value that ``encode`` turned into ``data``."""
        raise NotImplementedError

    def encode_for(self, key: str, value: Any) -> bytes:
        """``encode``, for the value stored under ``key``: a codec that authenticates
        binds the bytes to the key (``Signed``); any other ignores it.

        A ``Codec`` layer calls this (and ``decode_for``) only for a chain whose last stage
        authenticates; other chains cost nothing more.
        """
        return self.encode(value)

    def decode_for(self, key: str, data: bytes) -> Any:
        """``decode``, for the bytes stored under ``key`` (see ``encode_for``)."""
        return self.decode(data)

    def bound_to(self, codec: str) -> BaseCodec:
        """This stage as the last of a chain whose other stages are labelled ``codec``.

        An authenticating stage returns a copy that signs for that chain, so that bytes
        made by one chain are refused by another; any other stage returns itself.
        """
        return self

    @property
    def stages(self) -> tuple[BaseCodec, ...]:
        """The single codecs of this codec, in the order they encode."""
        return (self,)

    @property
    def label(self) -> str:
        """The name that ``resolve`` turns back into this codec (e.g. ``gzip-pickle``)."""
        return self.name

    def __or__(self, other: BaseCodec) -> Chain:
        return Chain(self.stages + other.stages)


def _flatten(stages: tuple[BaseCodec, ...]) -> tuple[BaseCodec, ...]:
    # A chain given as a stage is its stages: the checks below must see every one.
    return tuple(single for stage in stages for single in stage.stages)


def _check_stages(_: object, __: object, stages: tuple[BaseCodec, ...]) -> None:
    if not stages:
        raise ConfigurationError("a codec chain needs at least one codec")
    for stage in stages[1:]:
        if stage.kind != "transform":
            raise ConfigurationError(
                f"{type(stage).__name__} turns objects into bytes, so it must come first "
                f"in a chain, e.g. {type(stage).__name__}() | Gzip()"
            )
    for stage in stages[:-1]:
        if stage.authenticates:
            raise ConfigurationError(
                f"{type(stage).__name__} must be the last stage of a chain, so that a read "
                f"checks it before anything else decodes, e.g. Pickle() | Gzip() | "
                f"{type(stage).__name__}(secret)"
            )


@attrs.frozen
class Chain(BaseCodec):
    """Codecs applied in order on encode and in reverse order on decode."""

    _stages: tuple[BaseCodec, ...] = attrs.field(converter=_flatten, validator=_check_stages)
    # The stages' bound methods, in the order each direction runs them: no per-call setup.
    _encoders: tuple[Callable[[Any], Any], ...] = attrs.field(init=False, eq=False, repr=False)
    _decoders: tuple[Callable[[Any], Any], ...] = attrs.field(init=False, eq=False, repr=False)
    # The last stage, bound to the label of the others (see ``BaseCodec.bound_to``).
    _last: BaseCodec = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        *first, last = self._stages
        bound = last.bound_to(_label(first))
        stages = (*first, bound)
        object.__setattr__(self, "_last", bound)
        object.__setattr__(self, "_encoders", tuple(stage.encode for stage in stages))
        object.__setattr__(self, "_decoders", tuple(stage.decode for stage in reversed(stages)))

    @property
    def stages(self) -> tuple[BaseCodec, ...]:
        return self._stages

    @property
    def label(self) -> str:
        return _label(self._stages)

    @property
    def kind(self) -> Literal["serializer", "transform"]:  # type: ignore[override]
        return self._stages[0].kind

    def encode(self, value: Any) -> bytes:
        for encode in self._encoders:
            value = encode(value)
        data: bytes = value
        return data

    def decode(self, data: bytes) -> Any:
        value: Any = data
        for decode in self._decoders:
            value = decode(value)
        return value

    def encode_for(self, key: str, value: Any) -> bytes:
        for encode in self._encoders[:-1]:
            value = encode(value)
        return self._last.encode_for(key, value)

    def decode_for(self, key: str, data: bytes) -> Any:
        value = self._last.decode_for(key, data)
        for decode in self._decoders[1:]:
            value = decode(value)
        return value


def _label(stages: Iterable[BaseCodec]) -> str:
    """The name of a chain of ``stages``: their names, last first, joined by ``-``."""
    return "-".join(stage.name for stage in reversed(tuple(stages)))


#: Names registered by ``register``; they take precedence over the built-in names.
_REGISTRY: dict[str, Callable[[], BaseCodec]] = {}
# Each built-in name, as "module:class" under pystorage.codecs: the module is imported when
# the name is first resolved, so a program that stores pickles never loads a compressor.
_BUILT_IN = {
    "json": "serializers:JSON",
    "pickle": "serializers:Pickle",
    "msgpack": "serializers:MsgPack",
    "text": "serializers:Text",
    "raw": "serializers:Raw",
    "gzip": "compress:Gzip",
    "zstd": "compress:Zstd",
}


def register(name: str, factory: Callable[[], BaseCodec]) -> None:
    """Make ``name`` usable wherever a codec is given by name (no ``-`` in it)."""
    if not name or "-" in name:
        raise ConfigurationError(f"codec name {name!r} must be non-empty and contain no '-'")
    _REGISTRY[name] = factory


def _factory(name: str) -> Callable[[], BaseCodec] | None:
    """What builds the codec named ``name``; None for a name nobody registered."""
    factory = _REGISTRY.get(name)
    if factory is None and name in _BUILT_IN:
        module, _, attribute = _BUILT_IN[name].partition(":")
        built_in: Callable[[], BaseCodec] = getattr(
            importlib.import_module(f"pystorage.codecs.{module}"), attribute
        )
        return built_in
    return factory


def resolve(codec: str | BaseCodec) -> BaseCodec:
    """A codec instance from an instance or a name such as ``"json"`` or ``"zstd-msgpack"``.

    A dashed name lists the stages from the outermost (last applied) to the serializer,
    as file extensions do: ``"gzip-pickle"`` is ``Pickle() | Gzip()``.
    """
    if isinstance(codec, BaseCodec):
        return codec
    if not isinstance(codec, str):
        raise ConfigurationError(f"a codec is a name or a codec instance, not {codec!r}")
    factories = [(part, _factory(part)) for part in reversed(codec.split("-"))]
    stages = []
    for part, factory in factories:
        if factory is None:
            # Signing needs a secret, so it has no name: it is added last, where it belongs.
            hint = "; to sign values, pass secret= (or add Signed(secret))" * (part == "signed")
            known = ", ".join(sorted(_REGISTRY.keys() | _BUILT_IN.keys()))
            raise ConfigurationError(f"unknown codec {part!r} in {codec!r}; known: {known}" + hint)
        stages.append(factory())
    return stages[0] if len(stages) == 1 else Chain(tuple(stages))
