"""Hypothesis strategies for the signalling protocol, derived from its pydantic models.

``valid_message(model)`` builds a JSON-ready dict the model accepts, field by field from
the model's annotations and constraints (``min_length``, ``ge``, ``pattern``...), so a new
message type or a changed limit is fuzzed without touching these tests.
``mutated_message()`` damages such a dict (wrong types, extra or missing fields, huge or
odd strings, nested junk, unknown types); ``junk_frame()`` is everything else a socket can
receive (not JSON, not an object, binary, over the size limit, deeply nested).
"""

from __future__ import annotations

import json
import types
import typing
from datetime import date
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from signaling import protocol as p

# Python's ``\w`` and the Rust regex pydantic validates ``pattern`` with disagree on some
# characters (e.g. '½'): keep the "valid" strategy inside what both accept.
_TEXT_CAP = 80
"""Longest ordinary string drawn; limits are exercised by ``at_limit`` separately."""

# Text a real client could send: any code point but lone surrogates (they cannot be
# encoded as UTF-8; ``ODD_STRINGS`` sends them on purpose).
text_chars = st.characters(exclude_categories=("Cs",))


def _constraints(metadata: list[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, MinLen):
            found["min_len"] = item.min_length
        elif isinstance(item, MaxLen):
            found["max_len"] = item.max_length
        elif isinstance(item, Ge):
            found["ge"] = item.ge
        elif isinstance(item, Le):
            found["le"] = item.le
        elif isinstance(item, Gt):
            found["gt"] = item.gt
        elif isinstance(item, Lt):
            found["lt"] = item.lt
        elif getattr(item, "pattern", None):
            found["pattern"] = item.pattern
    return found


_PATTERN_CHARS = st.sampled_from(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-办件材料")


def _for_str(c: dict[str, Any]) -> st.SearchStrategy[str]:
    lo = c.get("min_len", 0)
    hi = c.get("max_len", _TEXT_CAP)
    if c.get("pattern"):
        # What the field's own pattern accepts, within its length bounds, from characters
        # Python's and pydantic's (Rust) regex engines agree on.
        return st.from_regex(c["pattern"], fullmatch=True, alphabet=_PATTERN_CHARS).filter(
            lambda s: lo <= len(s) <= hi)
    alphabet: st.SearchStrategy[str] = text_chars
    ordinary = st.text(alphabet, min_size=lo, max_size=max(lo, min(hi, _TEXT_CAP)))
    # Exactly at the limit (a short text repeated: hypothesis cannot draw 60,000 chars).
    at_limit = (st.text(alphabet, min_size=1, max_size=8).map(lambda s: (s * hi)[:hi])
                if hi > _TEXT_CAP else st.nothing())
    return ordinary | at_limit


def value_for(annotation: Any, metadata: list[Any]) -> st.SearchStrategy[Any]:
    """A JSON-ready value the (annotation, constraints) pair accepts."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *extra = typing.get_args(annotation)
        more: list[Any] = []
        for item in extra:
            more.extend(item.metadata if isinstance(item, FieldInfo) else [item])
        return value_for(inner, [*metadata, *more])
    if origin is Literal:
        return st.sampled_from(typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return st.one_of([value_for(arg, metadata) for arg in typing.get_args(annotation)])
    if annotation is type(None):
        return st.none()
    c = _constraints(metadata)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return st.lists(value_for(item, []), max_size=c.get("max_len", 4))
    if origin is dict:
        key, value = typing.get_args(annotation)
        return st.dictionaries(value_for(key, []), value_for(value, []),
                               max_size=c.get("max_len", 4))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return valid_dict(annotation)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        lo = c["gt"] + 1 if "gt" in c else c.get("ge", -(2**63))
        hi = c["lt"] - 1 if "lt" in c else c.get("le", 2**63)
        return st.integers(lo, hi)
    if annotation is float:
        return st.floats(c.get("gt", c.get("ge")), c.get("lt", c.get("le")),
                         exclude_min="gt" in c, exclude_max="lt" in c,
                         allow_nan=False, allow_infinity=False)
    if annotation is str:
        return _for_str(c)
    if annotation is date:
        return st.dates().map(date.isoformat)
    raise TypeError(f"no strategy for {annotation!r}: teach tests/fuzz/strategies.py")


def valid_dict(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """Every required field, and each optional one or not, valid for ``model``."""
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, field in model.model_fields.items():
        target = required if field.is_required() else optional
        target[name] = value_for(field.annotation, field.metadata)
    return st.fixed_dictionaries(required, optional=optional)


# Rules across fields that field-by-field generation cannot know.
_NEEDS_ONE_OF: dict[type[BaseModel], tuple[str, ...]] = {p.ChatSend: ("text", "material_id")}


def valid_message(model: type[p._Message]) -> st.SearchStrategy[dict[str, Any]]:
    strategy = valid_dict(model)
    one_of = _NEEDS_ONE_OF.get(model)
    if one_of is not None:
        strategy = strategy.filter(
            lambda d: any(d.get(k) not in (None, "") and str(d.get(k)).strip() for k in one_of))
    return strategy


any_valid_message = st.sampled_from(p.ALL_MESSAGES).flatmap(valid_message)

# Strings a client should not send but might: control characters, RTL marks, NUL,
# lone surrogates, huge ones. ``odd_strings(surrogates=False)`` leaves the surrogates out.
_ODD = ["", " ", "\x00", "\u202e", "\ufeff", "𝕍𝕨", "'; DROP TABLE cases;--", "../../etc/passwd",
        "%s%s%n", "\r\n", "null", "NaN", "1e309"]


def odd_strings(*, surrogates: bool = True) -> st.SearchStrategy[str]:
    chars = st.characters() if surrogates else text_chars
    parts = [st.sampled_from(_ODD), st.text(chars, max_size=40),
             st.integers(65, 20_000).map(lambda n: "長" * n)]
    if surrogates:
        parts.append(st.sampled_from(["\ud800", "a\udfffb", "\udcff" * 3]))
    return st.one_of(parts)


def junk_values(*, surrogates: bool = True) -> st.SearchStrategy[Any]:
    """Any JSON value, nested a few levels, with wrong types and odd strings."""
    leaves = st.one_of(
        st.none(), st.booleans(), st.integers(), st.integers(-(2**80), 2**80),
        st.floats(allow_nan=False, allow_infinity=False), odd_strings(surrogates=surrogates))
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.text(text_chars, max_size=8), inner, max_size=4),
        max_leaves=12)


@st.composite
def mutated_message(draw: st.DrawFn, *, surrogates: bool = True) -> dict[str, Any]:
    """A valid message with one to three things done wrong."""
    msg = draw(any_valid_message)
    junk = junk_values(surrogates=surrogates)
    for _ in range(draw(st.integers(1, 3))):
        keys = sorted(msg)
        how = draw(st.sampled_from(["drop", "retype", "extra", "type", "no_type", "v", "id"]))
        if how == "drop" and keys:
            msg.pop(draw(st.sampled_from(keys)))
        elif how == "retype" and keys:
            msg[draw(st.sampled_from(keys))] = draw(junk)
        elif how == "extra":
            msg[draw(st.text(text_chars, min_size=1, max_size=12))] = draw(junk)
        elif how == "type":
            msg["type"] = draw(st.one_of(
                st.sampled_from(["", "AUTH", "ping ", "call.start\x00", "__class__", "error",
                                 "welcome", "rtc.offer"]),
                st.text(text_chars, max_size=20), junk))
        elif how == "no_type":
            msg.pop("type", None)
        elif how == "v":
            msg["v"] = draw(st.sampled_from([0, 2, "1", 1.0, None, True, -1, 2**64]))
        elif how == "id":
            msg["id"] = draw(st.one_of(st.sampled_from(["", "x" * 65, None, 1, [], {}]), junk))
    return msg


def encode(msg: Any) -> str:
    """JSON as a browser sends it (lone surrogates stay as ``\\udXXX`` escapes)."""
    return json.dumps(msg, ensure_ascii=True)


@st.composite
def oversize_frame(draw: st.DrawFn) -> str | bytes:
    """Valid JSON (often a valid message) just or well over the frame limit."""
    over = draw(st.integers(1, 3 * p.MAX_FRAME))
    msg = draw(any_valid_message)
    base = encode({**msg, "pad": ""})
    pad = p.MAX_FRAME - len(base) + over
    frame = encode({**msg, "pad": "x" * max(pad, 0)})
    return frame.encode() if draw(st.booleans()) else frame


def junk_frame(*, surrogates: bool = True) -> st.SearchStrategy[str | bytes]:
    """Frames that are not a message at all, within the frame limit."""
    msg_text = any_valid_message.map(encode)
    return st.one_of(
        st.text(text_chars, max_size=200),
        st.binary(max_size=300),
        msg_text.flatmap(lambda t: st.integers(0, max(len(t) - 1, 0)).map(lambda n: t[:n])),
        msg_text.map(lambda t: t.encode("utf-16")),
        st.sampled_from(["", "null", "true", "1", "[]", '"auth"', "{}", '{"type":null}',
                         "NaN", "Infinity", "-Infinity", '{"type":"ping","id":"1"}garbage',
                         "\ufeff{}", "{'type': 'ping'}", '{"type":"ping","type":"auth"}']),
        junk_values(surrogates=surrogates).map(encode),
        # Nesting a JSON parser can still take (deeper nesting: see the xfail below).
        st.integers(1, 200).map(lambda n: "[" * n + "]" * n),
        st.integers(1, 200).map(lambda n: '{"a":' * n + "1" + "}" * n),
    )


def any_frame(*, surrogates: bool = True) -> st.SearchStrategy[str | bytes]:
    """What the server must survive: valid, damaged, junk and oversize frames."""
    return st.one_of(
        any_valid_message.map(encode),
        mutated_message(surrogates=surrogates).map(encode),
        junk_frame(surrogates=surrogates),
        oversize_frame(),
    )
