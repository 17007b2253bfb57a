"""The typed WebSocket protocol (see PROTOCOL.md): parse at the edge, name what is wrong."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic import ValidationError as PydanticValidationError

from vwindow.errors import TooLargeError, VWindowError
from vwindow.validation import describe, show_value

PROTOCOL_VERSION = 1
WS_PATH = "/ws"
"""Where the signalling socket is served."""
MAX_FRAME = 64 * 1024

MsgId = Annotated[str, Field(min_length=1, max_length=64)]
CallId = Annotated[int, Field(ge=1, le=2**31 - 1)]


class ProtocolError(VWindowError):
    """A message that cannot be understood; ``ref`` is its id when one could be read."""

    def __init__(self, code: str, message: str, *, field: str | None = None,
                 ref: str | None = None) -> None:
        super().__init__(message, field=field)
        self.code = code
        self.ref = ref


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    v: Literal[1] = 1
    id: MsgId


class Auth(_Message):
    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=8192)
    client: Literal["page", "devices"] = "page"
    resume_token: str | None = Field(default=None, max_length=128)


class Ping(_Message):
    type: Literal["ping"]


class AgentState(_Message):
    type: Literal["agent.state"]
    state: Literal["ready", "away", "offline"]
    reason: str | None = Field(default=None, max_length=100)


class CallStart(_Message):
    type: Literal["call.start"]
    service_code: str = Field(min_length=1, max_length=64)
    dialect: str | None = Field(default=None, max_length=32)
    birth_date: date | None = None
    """From the caller's ID card when read before the call: elderly callers go first."""
    booking_code: str | None = Field(default=None, min_length=8, max_length=12)
    """A booking (预约办) the caller holds: appointment holders go first."""
    case_number: str | None = Field(default=None, min_length=6, max_length=32,
                                    pattern=r"^[A-Za-z0-9-]+$")
    """A later call on an open case of this kiosk's township (more material, a question)."""


class CallCancel(_Message):
    type: Literal["call.cancel"]
    call_id: CallId


class CallCallback(_Message):
    """The kiosk stops waiting on screen: an agent calls it back when free."""

    type: Literal["call.callback"]
    call_id: CallId


class CallDecline(_Message):
    """A ringing agent passes the call on to the next agent."""

    type: Literal["call.decline"]
    call_id: CallId


class CallTransfer(_Message):
    """The agent hands a live call on, to a colleague by name or to a department queue."""

    type: Literal["call.transfer"]
    call_id: CallId
    to_agent: str | None = Field(default=None, min_length=1, max_length=64)
    to_queue: str | None = Field(default=None, min_length=1, max_length=64)
    note: str = Field(min_length=1, max_length=1000)


class CallAccept(_Message):
    type: Literal["call.accept"]
    call_id: CallId


class CallEnd(_Message):
    type: Literal["call.end"]
    call_id: CallId


class Publish(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Literal["camera", "mic", "doccam", "screen"]
    kind: Literal["audio", "video"]


class RtcJoin(_Message):
    type: Literal["rtc.join"]
    call_id: CallId
    publish: list[Publish] = Field(default_factory=list, max_length=4)


class RtcAnswer(_Message):
    type: Literal["rtc.answer"]
    call_id: CallId
    sdp: str = Field(min_length=1, max_length=60000)


class IceCandidate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    candidate: str = Field(max_length=1024)
    sdpMid: str | None = Field(default=None, max_length=32)
    sdpMLineIndex: int | None = Field(default=None, ge=0, le=64)
    usernameFragment: str | None = Field(default=None, max_length=256)


class RtcCandidate(_Message):
    type: Literal["rtc.candidate"]
    call_id: CallId
    candidate: IceCandidate | None


class RtcLeave(_Message):
    type: Literal["rtc.leave"]
    call_id: CallId


class RtcPublish(_Message):
    """Start publishing one more track mid-call (a screen share)."""

    type: Literal["rtc.publish"]
    call_id: CallId
    role: Literal["camera", "mic", "doccam", "screen"]
    kind: Literal["audio", "video"]


class RtcUnpublish(_Message):
    type: Literal["rtc.unpublish"]
    call_id: CallId
    role: Literal["camera", "mic", "doccam", "screen"]


class SessionMonitor(_Message):
    """A supervisor listens silently, whispers to the agent, or barges in."""

    type: Literal["session.monitor"]
    call_id: CallId
    mode: Literal["listen", "whisper", "barge"]


class CallInvite(_Message):
    """The agent on a call invites another agent (an expert) into it."""

    type: Literal["call.invite"]
    call_id: CallId
    username: str = Field(min_length=1, max_length=64)


class CallJoin(_Message):
    """An invited agent joins the call."""

    type: Literal["call.join"]
    call_id: CallId


class MediaSnapshot(_Message):
    """The agent takes an evidence still from a live video track into the case."""

    type: Literal["media.snapshot"]
    call_id: CallId
    participant_id: str = Field(min_length=1, max_length=128)
    role: Literal["camera", "doccam", "screen"]


class DeviceCapture(_Message):
    """The agent (or the kiosk) asks the kiosk's document camera for a page."""

    type: Literal["device.capture"]
    call_id: CallId
    document: str | None = Field(default=None, min_length=1, max_length=64,
                                 pattern=r"^[\w\-]+$")
    """The pages of one document go into one PDF; absent: the current document."""
    mode: Literal["color", "bw"] = "color"
    accept_poor: bool = False
    """Keep a page the quality gates would send back for a retake."""


class DeviceIdCard(_Message):
    """The agent asks the kiosk to read the ID card on its reader into the case."""

    type: Literal["device.idcard"]
    call_id: CallId


class DeviceCode(_Message):
    """The kiosk's scanner read a code: into the live call's case, else to the kiosk page
    (e.g. a booking code scanned before calling)."""

    type: Literal["device.code"]
    text: str = Field(min_length=1, max_length=4096)
    symbology: str = Field(default="QRCODE", min_length=1, max_length=32)
    source: Literal["scanner-evdev", "scanner-serial", "scanner-sim"]


class DeviceScreen(_Message):
    """The agent asks to see (``on``) or stop seeing the kiosk's desktop."""

    type: Literal["device.screen"]
    call_id: CallId
    on: bool = True


class RemoteRequest(_Message):
    """The agent asks to operate the kiosk (远程操控协办): the kiosk is asked to consent."""

    type: Literal["remote.request"]
    call_id: CallId


class RemoteConsent(_Message):
    """The citizen's answer on the kiosk's own screen (never from an agent)."""

    type: Literal["remote.consent"]
    call_id: CallId
    granted: bool


class RemoteStop(_Message):
    type: Literal["remote.stop"]
    call_id: CallId


class RemoteInput(_Message):
    """One pointer or key event from the agent; checked again by the kiosk's device
    agent (window bounds, key whitelist, rate limit)."""

    type: Literal["remote.input"]
    call_id: CallId
    event: dict[str, str | int | float | bool] = Field(max_length=8)


class RemoteState(_Message):
    """The kiosk's device agent reports the remote-control state to the call."""

    type: Literal["remote.state"]
    call_id: CallId
    state: Literal["idle", "awaiting_consent", "active", "stopped"]
    reason: str | None = Field(default=None, max_length=64)
    agent_name: str | None = Field(default=None, max_length=100)


class SurveyorPosition(_Message):
    """The surveyor phone's GPS fix (Geolocation API), streamed while the call runs."""

    type: Literal["surveyor.position"]
    call_id: CallId
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accuracy: float = Field(ge=0, le=100_000)
    """Metres (95 % circle, as the browser reports it)."""
    heading: float | None = Field(default=None, ge=0, lt=360)
    at: int | None = Field(default=None, ge=0)
    """The fix's time, ms since the epoch (the phone's clock)."""


class DeviceProgress(_Message):
    type: Literal["device.progress"]
    request_id: str = Field(min_length=1, max_length=64)
    call_id: CallId | None = None
    """The call of the request (the device.capture push names it): routes the report to
    the node holding the call's room."""
    stage: Literal["capturing", "processing", "retake", "building_pdf", "uploading",
                   "queued", "waiting_card", "done", "failed"]
    percent: float | None = Field(default=None, ge=0, le=100)
    message: str | None = Field(default=None, max_length=500)


class ChatSend(_Message):
    """Text, an attached material of the call's case (picture, voice note), or both."""

    type: Literal["chat.send"]
    call_id: CallId
    # material_id is validated first, so that text's check sees it.
    material_id: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    text: str = Field(default="", max_length=2000, validate_default=True)

    @field_validator("text")
    @classmethod
    def _text_or_material(cls, text: str, info: ValidationInfo) -> str:
        # An error of the whole message would name no field: this one names 'text'.
        if not text.strip() and info.data.get("material_id") is None:
            raise ValueError("a chat message needs 'text' or 'material_id'")
        return text


class DashboardSubscribe(_Message):
    type: Literal["dashboard.subscribe"]


ALL_MESSAGES: tuple[type[_Message], ...] = (
    Auth, Ping, AgentState, CallStart, CallCancel, CallCallback, CallAccept, CallDecline,
    CallEnd, CallInvite, CallJoin, CallTransfer,
    RtcJoin, RtcAnswer, RtcCandidate, RtcLeave, RtcPublish, RtcUnpublish, SessionMonitor,
    MediaSnapshot, DeviceCapture, DeviceIdCard, DeviceCode, DeviceScreen, DeviceProgress,
    RemoteRequest, RemoteConsent, RemoteStop, RemoteInput, RemoteState, SurveyorPosition,
    ChatSend,
    DashboardSubscribe,
)

MESSAGE_TYPES: dict[str, type[_Message]] = {
    model.model_fields["type"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in ALL_MESSAGES
}


def parse_message(raw: str | bytes, max_frame: int = MAX_FRAME) -> _Message:
    """Parse one frame into its typed message, or raise ProtocolError naming the problem."""
    if len(raw) > max_frame:
        raise ProtocolError("too_large", f"frame of {len(raw)} bytes is over the "
                            f"{max_frame}-byte limit")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as err:
        # ValueError covers JSONDecodeError, UnicodeDecodeError and integers over the
        # int-to-str digit limit; RecursionError: nesting deeper than Python's stack.
        raise ProtocolError("invalid_json", f"frame is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ProtocolError("invalid_message",
                            f"a message must be a JSON object, got {type(data).__name__}")
    ref = data.get("id") if isinstance(data.get("id"), str) else None
    msg_type = data.get("type")
    if not isinstance(msg_type, str):
        raise ProtocolError("invalid_message", "field 'type' is missing or not a string",
                            field="type", ref=ref)
    model = MESSAGE_TYPES.get(msg_type)
    if model is None:
        raise ProtocolError("unknown_type", f"unknown message type {show_value(msg_type)}",
                            field="type", ref=ref)
    try:
        return model.model_validate(data)
    except PydanticValidationError as err:
        where, text = describe(err, within=msg_type)
        raise ProtocolError("invalid_message", text, field=where, ref=ref) from err


def error_message(code: str, message: str, *, field: str | None = None,
                  ref: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": "error", "code": code,
                           "message": message}
    if field:
        out["field"] = field
    if ref:
        out["ref"] = ref
    return out


def check_size(data: bytes | str, limit: int) -> None:
    if len(data) > limit:
        raise TooLargeError(f"frame of {len(data)} bytes is over the {limit}-byte limit")
