"""The Codec layer: objects above it, bytes below it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from pystorage.codecs.base import BaseCodec, resolve
from pystorage.errors import CodecError, ConfigurationError
from pystorage.layers import envelope
from pystorage.layers.base import ABSENT, Layer, ValueKind, Wrapper, stack_from


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Codec(Wrapper):
    """Encodes values on the way down and decodes them on the way up.

    ``codec`` is a codec instance (``Pickle() | Zstd()``) or its name (``"zstd-pickle"``).
    Failures become ``CodecError`` naming the key, and nothing is written.

    For a chain whose last stage authenticates (``Signed``), ``Codec(...)`` makes a
    ``SignedCodec``, which hands every key to the codec so that the signature binds the
    value to it; the Codec layer of any other chain never touches the key.
    """

    codec: BaseCodec = attrs.field(converter=resolve)
    #: Values are envelopes of a ``Tags`` layer above, stored framed with their tags'
    #: tokens (``pystorage.layers.envelope``); a stack with tags needs it, and refuses it
    #: without a ``Tags`` layer above. (Not in the repr: the Tags layer on top says it.)
    tagged: bool = attrs.field(default=False, kw_only=True, repr=False)
    # Bound once: each get and set saves an attribute lookup and a method binding.
    _encode: Callable[..., bytes] = attrs.field(init=False, repr=False)
    _decode: Callable[..., Any] = attrs.field(init=False, repr=False)

    def __new__(cls, *args: Any, **kwargs: Any) -> Codec:
        # The choice is made here, once, so that neither class tests for it on every call.
        if cls is Codec:
            given = args[0] if args else kwargs.get("codec")
            if given is not None and resolve(given).stages[-1].authenticates:
                cls = SignedCodec
        return super().__new__(cls)

    def __attrs_post_init__(self) -> None:
        if self.codec.stages[-1].authenticates:
            raise ConfigurationError(
                f"{type(self).__name__} does not hand keys to its codec, so it cannot sign: "
                f"build the layer with Codec({self.codec.label!r} ...) instead"
            )
        self._encode = self.codec.encode
        self._decode = self.codec.decode
        if self.tagged:
            # Bound once, as the plain codec's: an untagged stack pays nothing for tags.
            self._encode = envelope.encoder(self._encode)
            self._decode = envelope.decoder(self._decode)

    def link(self, inner: Layer) -> None:
        # A Codec layer below a signed one would decode (inflate) stored bytes before the
        # signature is checked: the same mistake as Signed(secret) | Gzip() in one chain.
        if self.codec.stages[-1].authenticates:
            for layer in stack_from(inner):
                if isinstance(layer, Codec):
                    raise ConfigurationError(
                        f"{layer!r} is below {self!r}: it would decode stored bytes before "
                        f"the signature is checked; put all codecs in one chain, signed last"
                    )
        super().link(inner)

    def value_kind_below(self, above: ValueKind) -> ValueKind:
        return "bytes"

    def get(self, key: str) -> Any:
        data = self._inner.get(key)
        try:
            return self._decode(data)
        except Exception as exc:
            raise self._decode_error(key, exc) from exc

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        data, ttl = self._inner.get_with_ttl(key)
        try:
            return self._decode(data), ttl
        except Exception as exc:
            raise self._decode_error(key, exc) from exc

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        try:
            data = self._encode(value)
        except Exception as exc:
            raise self._encode_error(key, value, exc) from exc
        self._inner.set(key, data, ttl)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        try:
            data = self._encode(value)
        except Exception as exc:
            raise self._encode_error(key, value, exc) from exc
        return self._inner.add(key, data, ttl)

    def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        # Decoding, changing and encoding all happen inside the backend's atomic section,
        # so any codec keeps the change atomic. The backend may call this more than once:
        # the value returned is the one of the call whose bytes it stored, the last.
        changed: list[Any] = []

        def change_bytes(data: Any) -> bytes:
            if data is ABSENT:
                value = change(ABSENT)
            else:
                try:
                    current = self._decode(data)
                except Exception as exc:
                    raise self._decode_error(key, exc) from exc
                value = change(current)
            try:
                encoded = self._encode(value)
            except Exception as exc:
                raise self._encode_error(key, value, exc) from exc
            changed.append(value)
            return encoded

        self._inner.modify(key, change_bytes, ttl)
        return changed[-1]

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return self._decode_all(self._inner.get_many(keys))

    def peek_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return self._decode_all(self._inner.peek_many(keys))

    def get_many_with_ttl(self, keys: Iterable[str]) -> dict[str, tuple[Any, float | None]]:
        found = self._inner.get_many_with_ttl(keys)
        values = self._decode_all({key: data for key, (data, _) in found.items()})
        return {key: (value, found[key][1]) for key, value in values.items()}

    def _decode_all(self, found: dict[str, Any]) -> dict[str, Any]:
        decode = self._decode
        values = {}
        for key, data in found.items():
            try:  # free unless it raises (Python 3.11+)
                values[key] = decode(data)
            except Exception as exc:
                raise self._decode_error(key, exc) from exc
        return values

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        # Encode everything first so that one bad value writes nothing at all.
        encoded = {}
        for key, value in items.items():
            try:
                encoded[key] = self._encode(value)
            except Exception as exc:
                raise self._encode_error(key, value, exc) from exc
        self._inner.set_many(encoded, ttl)

    def _decode_error(self, key: str, exc: Exception) -> CodecError:
        return CodecError(
            f"the stored value of key {key!r} cannot be decoded as {self.codec.label}: "
            f"{type(exc).__name__}: {exc}"
        )

    def _encode_error(self, key: str, value: Any, exc: Exception) -> CodecError:
        if type(value) is envelope.Envelope:  # name the user's value, not our wrapping
            value = value.value
        return CodecError(
            f"the value for key {key!r} ({type(value).__name__}) cannot be encoded as "
            f"{self.codec.label}: {type(exc).__name__}: {exc}"
        )


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class SignedCodec(Codec):
    """The Codec layer of a chain whose last stage authenticates: ``Codec(Pickle() |
    Signed(secret))`` is one.

    Every operation hands its key to the codec (``encode_for``/``decode_for``), so that a
    value signed for one key is refused under any other. The same operations as
    ``Codec``'s, with the key passed on: kept apart so that unsigned stacks pay nothing.
    """

    def __attrs_post_init__(self) -> None:
        if self.tagged:
            # Its frame would sit outside the signature: a writer of the store could
            # give an invalidated value the tokens of today and have it served again.
            raise ConfigurationError(
                "a signed codec cannot carry tags yet: use tags with an unsigned codec"
            )
        self._encode = self.codec.encode_for
        self._decode = self.codec.decode_for

    def get(self, key: str) -> Any:
        data = self._inner.get(key)
        try:
            return self._decode(key, data)
        except Exception as exc:
            raise self._decode_error(key, exc) from exc

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        data, ttl = self._inner.get_with_ttl(key)
        try:
            return self._decode(key, data), ttl
        except Exception as exc:
            raise self._decode_error(key, exc) from exc

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        try:
            data = self._encode(key, value)
        except Exception as exc:
            raise self._encode_error(key, value, exc) from exc
        self._inner.set(key, data, ttl)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        try:
            data = self._encode(key, value)
        except Exception as exc:
            raise self._encode_error(key, value, exc) from exc
        return self._inner.add(key, data, ttl)

    def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        changed: list[Any] = []

        def change_bytes(data: Any) -> bytes:
            if data is ABSENT:
                value = change(ABSENT)
            else:
                try:
                    current = self._decode(key, data)
                except Exception as exc:
                    raise self._decode_error(key, exc) from exc
                value = change(current)
            try:
                encoded = self._encode(key, value)
            except Exception as exc:
                raise self._encode_error(key, value, exc) from exc
            changed.append(value)
            return encoded

        self._inner.modify(key, change_bytes, ttl)
        return changed[-1]

    def _decode_all(self, found: dict[str, Any]) -> dict[str, Any]:
        decode = self._decode
        values = {}
        for key, data in found.items():
            try:
                values[key] = decode(key, data)
            except Exception as exc:
                raise self._decode_error(key, exc) from exc
        return values

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        encoded = {}
        for key, value in items.items():
            try:
                encoded[key] = self._encode(key, value)
            except Exception as exc:
                raise self._encode_error(key, value, exc) from exc
        self._inner.set_many(encoded, ttl)
