"""One codec for every event payload, built once from the catalogue of event types.

Stored form of a payload (``events.payload``): the msgspec JSON of the typed
payload with every personal field *blanked* ("" / null / [] / {}), so that the
common path decodes bytes straight into the typed Struct. The personal fields go
into ``events.secret``: the JSON object of their values, sealed with the
subject's data key (``core.events.crypto``).

Schema evolution: a payload type declares ``schema_version``; an upcaster turns a
stored dict of version N into version N+1 and is keyed by the stable type name.
Reading an unknown type or an undecodable payload raises ``EventDecodeError``
naming the position and the type: never a silent skip.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Union
from uuid import UUID

import msgspec
from msgspec import inspect as mi

from alliance.core.errors import ConfigurationError, EventDecodeError, ValidationError
from alliance.core.events.base import ERASED, EventPayload

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
#: The key under which an upcaster finds the event's ``occurred_at`` (ISO 8601) when the
#: document it reads lacks something only the envelope knows (``goal.measure_attached`` v1's
#: schedule starts on the day it was attached). Removed before the typed decode.
UPCAST_OCCURRED_AT = "__occurred_at"

HASH_SCHEME = 1
GENESIS_HASH = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _PersonalField(msgspec.Struct, frozen=True):
    name: str
    blank: Any
    erased: Any
    is_tuple: bool


def _personal_fields(cls: type[EventPayload]) -> tuple[_PersonalField, ...]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    found = []
    for field in info.fields:
        ftype = field.type
        personal = isinstance(ftype, mi.Metadata) and bool((ftype.extra or {}).get("personal"))
        if not personal:
            _refuse_nested_personal(cls, field.name, ftype)
            continue
        assert isinstance(ftype, mi.Metadata)
        inner = ftype.type
        if isinstance(inner, mi.StrType):
            found.append(_PersonalField(field.encode_name, "", ERASED, False))
        elif isinstance(inner, mi.UnionType) and {type(t) for t in inner.types} == {mi.StrType, mi.NoneType}:
            found.append(_PersonalField(field.encode_name, None, ERASED, False))
        elif isinstance(inner, mi.VarTupleType) and isinstance(inner.item_type, mi.StrType):
            found.append(_PersonalField(field.encode_name, (), (), True))
        elif (isinstance(inner, mi.DictType) and isinstance(inner.key_type, mi.StrType)
              and isinstance(inner.value_type, mi.StrType)):
            found.append(_PersonalField(field.encode_name, {}, {}, False))
        else:
            raise ConfigurationError(
                f"{cls.type_name()}.{field.name}: personal fields must be str, str | None, "
                "tuple[str, ...] or dict[str, str]")
    return tuple(found)


def _refuse_nested_personal(cls: type, name: str, t: mi.Type, depth: int = 0) -> None:
    """Personal markers only work at the top level: refuse them deeper, loudly."""
    if depth > 4:
        return
    if isinstance(t, mi.Metadata):
        if (t.extra or {}).get("personal"):
            raise ConfigurationError(f"{cls.__name__}.{name}: personal fields must be top-level payload fields")
        _refuse_nested_personal(cls, name, t.type, depth + 1)
    elif isinstance(t, mi.StructType):
        for f in t.fields:
            _refuse_nested_personal(cls, name, f.type, depth + 1)
    elif isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        _refuse_nested_personal(cls, name, t.item_type, depth + 1)
    elif isinstance(t, mi.UnionType):
        for member in t.types:
            _refuse_nested_personal(cls, name, member, depth + 1)


class EncodedPayload(msgspec.Struct, frozen=True):
    type: str
    schema_version: int
    data: bytes
    personal: bytes | None  # JSON of the personal fields, before sealing


class EventCodec:
    def __init__(self, event_types: Iterable[type[EventPayload]],
                 upcasters: Mapping[tuple[str, int], Upcaster] | None = None) -> None:
        types = tuple(event_types)
        if not types:
            raise ConfigurationError("the event catalogue is empty")
        self.types: dict[str, type[EventPayload]] = {}
        for cls in types:
            name = cls.type_name()
            if not name or name == "None" or name in self.types:
                raise ConfigurationError(f"event type {cls.__name__} needs a unique stable tag, got {name!r}")
            self.types[name] = cls
        self._personal = {name: _personal_fields(cls) for name, cls in self.types.items()}
        self._personal_names = {name: frozenset(f.name for f in spec) for name, spec in self._personal.items()}
        self._upcasters = dict(upcasters or {})
        for (name, version) in self._upcasters:
            if name not in self.types or version >= self.types[name].schema_version:
                raise ConfigurationError(f"upcaster {name} v{version} has no newer schema to reach")
        self._encoder = msgspec.json.Encoder()
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(Union[types])  # type: ignore[valid-type]  # noqa: UP007 (a runtime tuple of types)
        self._typed = {name: msgspec.json.Decoder(cls) for name, cls in self.types.items()}

    def personal_fields(self, type_name: str) -> tuple[str, ...]:
        return tuple(f.name for f in self._personal[type_name])

    # -- append side -------------------------------------------------------
    def encode(self, payload: EventPayload) -> EncodedPayload:
        """Validate ``payload`` against its schema and split off its personal fields.

        msgspec Structs do not validate on construction, so the payload is
        round-tripped through its typed decoder: constraints are checked before
        the database is touched.
        """
        cls = type(payload)
        name = cls.type_name()
        if self.types.get(name) is not cls:
            raise ValidationError(f"unknown event type {name!r}", code="unknown_event_type", field="type")
        personal_spec = self._personal[name]
        if not personal_spec:
            data = full = self._encoder.encode(payload)
            personal = None
        else:
            # Encoded once each, the blanked payload and the personal values; what is validated is
            # their splice, exactly what ``decode_many`` will read back (the later key wins).
            data = self._encoder.encode(msgspec.structs.replace(payload, **{f.name: f.blank for f in personal_spec}))
            personal = self._encoder.encode({f.name: getattr(payload, f.name) for f in personal_spec})
            full = data[:-1] + b"," + personal[1:]
        try:
            self._typed[name].decode(full)
        except msgspec.ValidationError as exc:
            raise ValidationError(f"{name}: {exc}", code="invalid_event", field=_field_of(exc)) from exc
        return EncodedPayload(name, cls.schema_version, data, personal)

    # -- read side ---------------------------------------------------------
    def decode(self, type_name: str, schema_version: int, data: bytes, personal: bytes | None,
               *, erased: bool, position: int, occurred_at: datetime | None = None) -> EventPayload:
        """The typed payload; ``personal`` is the opened secret (None if none or erased)."""
        cls = self.types.get(type_name)
        if cls is None:
            raise EventDecodeError(f"unknown event type {type_name!r} at position {position}",
                                   position=position, type_name=type_name)
        try:
            if schema_version == cls.schema_version:
                payload = self._typed[type_name].decode(data)
            else:
                payload = self._upcast(cls, type_name, schema_version, data, occurred_at)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise EventDecodeError(f"event at position {position} ({type_name} v{schema_version}) "
                                   f"cannot be decoded: {exc}", position=position, type_name=type_name) from exc
        spec = self._personal[type_name]
        if not spec:
            return payload
        if erased:
            return msgspec.structs.replace(payload, **{f.name: f.erased for f in spec})
        if personal is None:
            return payload
        values = msgspec.json.decode(personal)
        for f in spec:
            if f.is_tuple and isinstance(values.get(f.name), list):
                values[f.name] = tuple(values[f.name])
        names = self._personal_names[type_name]
        return msgspec.structs.replace(payload, **{k: v for k, v in values.items() if k in names})

    def decode_many(self, stored: Sequence[tuple[str, int, bytes, bytes | None, bool, int, datetime]]
                    ) -> list[EventPayload]:
        """Many stored payloads — (type, schema version, data, opened secret, erased, position,
        occurred at) each — in one pass.

        A payload at its type's current schema, not erased, is decoded by one typed-decoder call
        with its opened personal values spliced in after the blanked ones (in a JSON object the
        later key wins, so the decoder sees the full payload): no second decode of the secret,
        no dict, no copy of the Struct. Upcasts, erased subjects, unknown types, and anything the
        typed decoder refuses go through ``decode``, which names the event's position and type.
        """
        types, typed, decode = self.types, self._typed, self.decode
        out: list[EventPayload] = []
        for name, version, data, personal, erased, position, occurred_at in stored:
            cls = types.get(name)
            if cls is not None and version == cls.schema_version and not erased:
                try:
                    out.append(typed[name].decode(data if personal is None else data[:-1] + b"," + personal[1:]))
                    continue
                except (msgspec.ValidationError, msgspec.DecodeError):
                    pass
            out.append(decode(name, version, data, personal, erased=erased, position=position,
                              occurred_at=occurred_at))
        return out

    def _upcast(self, cls: type[EventPayload], type_name: str, version: int, data: bytes,
                occurred_at: datetime | None = None) -> EventPayload:
        document = msgspec.json.decode(data)
        if occurred_at is not None:
            document[UPCAST_OCCURRED_AT] = occurred_at.isoformat()
        while version < cls.schema_version:
            upcaster = self._upcasters.get((type_name, version))
            if upcaster is None:
                raise msgspec.ValidationError(f"no upcaster from schema version {version}")
            document = upcaster(document)
            version += 1
        document["type"] = type_name
        document.pop(UPCAST_OCCURRED_AT, None)
        return self._typed[type_name].decode(self._encoder.encode(document))


def _field_of(exc: msgspec.ValidationError) -> str | None:
    text = str(exc)
    if "at `$." in text:
        return text.split("at `$.", 1)[1].rstrip("`").split("`")[0]
    return None


# -- tamper evidence ---------------------------------------------------------
def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _uuid_bytes(value: UUID | None) -> bytes:
    return value.bytes if value is not None else b""


def content_digest(*, event_id: UUID, stream_id: str, version: int, type_name: str,
                   schema_version: int, tenant_id: UUID, subject_id: UUID, actor_id: UUID,
                   actor_role: str, occurred_at: datetime, correlation_id: UUID | None,
                   causation_id: UUID | None, key_id: UUID | None, hash_scheme: int,
                   payload: bytes, secret: bytes | None) -> bytes:
    """SHA-256 over the exact stored content of an event (hash scheme 1).

    Layout: each field as a 4-byte big-endian length followed by its bytes, in this
    order: event id (16), stream id (UTF-8), version (int64), type (UTF-8),
    schema version (int32), tenant (16), subject (16), actor (16), actor role
    (UTF-8), occurred-at (int64 µs since the epoch), correlation id (16 or empty),
    causation id (16 or empty), key id (16 or empty), hash scheme (int16),
    payload bytes, secret bytes (ciphertext, or empty).
    """
    sid, typ, role = stream_id.encode(), type_name.encode(), actor_role.encode()
    corr, caus, kid = _uuid_bytes(correlation_id), _uuid_bytes(causation_id), _uuid_bytes(key_id)
    sec = secret or b""
    return hashlib.sha256(b"".join((
        _L16, event_id.bytes, _L.pack(len(sid)), sid, _L8, _Q.pack(version), _L.pack(len(typ)), typ,
        _L4, _I.pack(schema_version), _L16, tenant_id.bytes, _L16, subject_id.bytes, _L16, actor_id.bytes,
        _L.pack(len(role)), role, _L8, _Q.pack(_micros(occurred_at)), _L.pack(len(corr)), corr,
        _L.pack(len(caus)), caus, _L.pack(len(kid)), kid, _L2, _H.pack(hash_scheme),
        _L.pack(len(payload)), payload, _L.pack(len(sec)), sec))).digest()


_Q, _I, _H, _L = struct.Struct(">q"), struct.Struct(">i"), struct.Struct(">h"), struct.Struct(">I")
_L2, _L4, _L8, _L16 = _L.pack(2), _L.pack(4), _L.pack(8), _L.pack(16)


def chain_hash(prev_hash: bytes, digest: bytes, position: int, tx_id: int, recorded_at: datetime) -> bytes:
    """The link of an event in its stream's chain (computed by the database at append;
    this is the same computation for verification)."""
    return hashlib.sha256(prev_hash + digest + struct.pack(">q", position) + struct.pack(">q", tx_id)
                          + struct.pack(">q", _micros(recorded_at))).digest()
