"""Authorisation matrix: every REST route and every WebSocket message type, sent by every
kind of principal, against the answer its rule says it should get.

The roles come from the server's own tables (``rest.ROUTE_ROLES``, ``ws.ALLOWED``,
``ws.DEVICE_CLIENT_MESSAGES``); what this file adds is each route's and message's
*scope* — whose case or call it must be — and each principal's relation to the one live
call of the scene (``tests/authz.py``). A route the app serves without an entry in
``ROUTE_ROLES``, or a route or message type without a rule here, fails the test by name.

How a refusal looks, stated once:

- REST: no token, an expired token, or a token of a role the route does not take → 401
  (``TokenIssuer.verify`` checks the audience against the route's roles, so a token for
  another role is "not a token for this service"); the right role on someone else's case
  or call → 403. An allowed request may still fail on its merits (400, 404, 409, 413),
  never with 401/403 or a 5xx.
- WebSocket: anything but ``auth`` on a socket that has not authenticated →
  ``unauthenticated``; a role or client (the kiosk's device agent) that may not send the
  type, or someone else's call → ``forbidden``. Allowed: an ack, a reply, or an error
  about the state of things (``invalid_state``, ``not_found``, ``conflict``, …).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Literal, get_args, get_origin

from signaling import protocol as p
from signaling import rest, ws
from signaling.app import make_app
from tests.authz import ID_READ, JPEG, OTHER_KIOSK, UPLOAD, Scene, WsProbe, build_scene
from tests.conftest import Server
from vwindow import reports
from vwindow.config import load_config
from vwindow.models import Role

logger = logging.getLogger(__name__)

# -- principals ---------------------------------------------------------------------------

# Relations to the scene's live call and its case.
CASE = "case"  # check_case_access lets it in
CALL = "call"  # check_call_member lets it in
CALL_AGENT = "call_agent"  # the agent who took the call
CALL_KIOSK = "call_kiosk"  # the kiosk the call is from
INVITED = "invited"  # an agent invited into the call (who has joined it)


@dataclass(frozen=True)
class Who:
    name: str
    role: Role | None  # None: no token at all
    relations: frozenset[str] = frozenset()
    client: Literal["page", "devices"] = "page"
    expired: bool = False
    token_of: str = ""  # whose token it uses, when not its own name

    @property
    def token_name(self) -> str:
        return self.token_of or self.name

    @property
    def authenticates(self) -> bool:
        """Can it open an authenticated socket?"""
        return (self.role is not None and not self.expired
                and (self.client == "page" or self.role is Role.KIOSK))


ANONYMOUS = Who("anonymous", None)
PRINCIPALS: tuple[Who, ...] = (
    ANONYMOUS,
    Who("kiosk", Role.KIOSK, frozenset({CASE, CALL, CALL_KIOSK})),
    Who("kiosk_other", Role.KIOSK),  # another township's kiosk
    Who("agent", Role.AGENT, frozenset({CASE, CALL, CALL_AGENT})),
    Who("expert", Role.AGENT, frozenset({CASE, CALL, INVITED})),
    Who("agent_other", Role.AGENT),  # an agent not on the case
    Who("supervisor", Role.SUPERVISOR, frozenset({CASE, CALL})),
    Who("surveyor", Role.SURVEYOR, frozenset({CASE, CALL})),
    Who("surveyor_expired", Role.SURVEYOR, frozenset({CASE, CALL}), expired=True),
)
WS_PRINCIPALS: tuple[Who, ...] = (
    *PRINCIPALS,
    Who("devices", Role.KIOSK, frozenset({CASE, CALL, CALL_KIOSK}), client="devices",
        token_of="kiosk"),
    # An agent's token cannot open a device-agent socket at all.
    Who("agent_as_devices", Role.AGENT, frozenset({CASE, CALL, CALL_AGENT}),
        client="devices", token_of="agent"),
)

# -- REST rules ---------------------------------------------------------------------------

Factory = Callable[[Scene], Any]


@dataclass(frozen=True)
class RestRule:
    """Whose case or call a route is for (any of ``needs``; empty: the role is enough),
    and a request that is valid apart from who sends it."""

    needs: frozenset[str] = frozenset()
    public: bool = False
    json: Factory | None = None
    data: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    query: Factory | None = None


PUBLIC = RestRule(public=True, json=lambda s: {})  # the body fails validation: 400, not 401
ROLE_ONLY = RestRule()
ON_CASE = RestRule(needs=frozenset({CASE}))


def _tomorrow_at(hour: int) -> str:
    tz = timezone(timedelta(hours=8))
    day = datetime.now(tz).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, tzinfo=tz).isoformat()


def _period(s: Scene) -> dict[str, str]:
    today = date.today().isoformat()
    return {"from": today, "to": today}


REST_RULES: dict[tuple[str, str], RestRule] = {
    ("POST", "/api/v1/auth/login"): RestRule(
        public=True, json=lambda s: {"username": "agent2", "password": "demo1234"}),
    ("POST", "/api/v1/auth/kiosk"): RestRule(
        public=True, json=lambda s: {"kiosk_code": OTHER_KIOSK[0], "device_key": OTHER_KIOSK[1]}),
    ("POST", "/api/v1/auth/kiosk/enrol"): PUBLIC,
    ("POST", "/api/v1/auth/surveyor"): PUBLIC,
    ("GET", "/healthz"): RestRule(public=True),
    ("GET", "/api/v1/catalog"): ROLE_ONLY,
    ("GET", "/api/v1/cases/{case_id}"): ON_CASE,
    ("POST", "/api/v1/cases/{case_id}/materials"): RestRule(
        needs=frozenset({CASE}), data=JPEG, headers={"Content-Type": "image/jpeg"}),
    ("GET", "/api/v1/materials/{material_id}/content"): ON_CASE,
    ("POST", "/api/v1/calls/{call_id}/rating"): RestRule(
        needs=frozenset({CALL_KIOSK}), json=lambda s: {"stars": 5}),
    ("POST", "/api/v1/cases/{case_id}/surveyor-links"): RestRule(
        needs=frozenset({CALL_AGENT}), json=lambda s: {"call_id": s.call_id}),
    ("GET", "/api/v1/appointment-slots"): ROLE_ONLY,
    ("POST", "/api/v1/appointment-slots"): RestRule(json=lambda s: {
        "hall": "黄山区政务服务中心 综合窗口", "starts_at": _tomorrow_at(16),
        "ends_at": _tomorrow_at(17), "capacity": 2}),
    ("POST", "/api/v1/cases/{case_id}/appointments"): RestRule(
        needs=frozenset({CASE}), json=lambda s: {"slot_id": s.slot_id}),
    # The booking code is the citizen's bearer secret, looked up at the hall by any staff.
    ("GET", "/api/v1/appointments/{code}"): ROLE_ONLY,
    ("POST", "/api/v1/appointments/{code}/cancel"): ROLE_ONLY,
    ("POST", "/api/v1/cases/{case_id}/uploads"): RestRule(needs=frozenset({CASE}), json=lambda s: {
        "sha256": hashlib.sha256(UPLOAD).hexdigest(), "size": len(UPLOAD),
        "content_type": "image/jpeg", "call_id": s.call_id}),
    ("GET", "/api/v1/uploads/{upload_id}"): ON_CASE,
    ("PATCH", "/api/v1/uploads/{upload_id}"): RestRule(
        needs=frozenset({CASE}), data=UPLOAD[:8],
        headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}),
    ("POST", "/api/v1/cases/{case_id}/id-reads"): RestRule(
        needs=frozenset({CASE}), json=lambda s: {**ID_READ, "call_id": s.call_id}),
    ("POST", "/api/v1/id-reads/{id_read_id}/reveal"): RestRule(
        needs=frozenset({CASE}), json=lambda s: {"reason": "核验身份"}),
    ("POST", "/api/v1/cases/{case_id}/codes"): RestRule(
        needs=frozenset({CASE}), json=lambda s: {"text": "authz", "source": "agent",
                                                 "call_id": s.call_id}),
    ("GET", "/api/v1/cases/{case_id}/codes"): ON_CASE,
    ("GET", "/api/v1/cases/{case_id}/flow"): ON_CASE,
    # An unknown target state: checked after who may ask, and changes nothing.
    ("POST", "/api/v1/cases/{case_id}/transitions"): RestRule(
        needs=frozenset({CASE}), json=lambda s: {"to": "nowhere"}),
    ("PUT", "/api/v1/cases/{case_id}/answers"): RestRule(
        needs=frozenset({CASE}), json=lambda s: {"answers": {}}),
    ("POST", "/api/v1/materials/{material_id}/tag"): RestRule(
        needs=frozenset({CASE}), json=lambda s: {"material_type": "authz"}),
    ("GET", "/api/v1/catalog/search"): RestRule(query=lambda s: {"q": "低保"}),
    ("GET", "/api/v1/catalog/export.json"): ROLE_ONLY,
    ("GET", "/api/v1/catalog/export.csv"): ROLE_ONLY,
    ("POST", "/api/v1/catalog/import"): RestRule(json=lambda s: []),
    ("POST", "/api/v1/cases/{case_id}/inspections"): RestRule(
        needs=frozenset({CALL_AGENT}), json=lambda s: {"call_id": s.call_id}),
    ("GET", "/api/v1/cases/{case_id}/inspections"): ON_CASE,
    ("GET", "/api/v1/inspections/{inspection_id}"): ON_CASE,
    ("PUT", "/api/v1/inspections/{inspection_id}/items/{key}"): RestRule(
        needs=frozenset({CASE}), json=lambda s: {"state": "pass"}),
    ("POST", "/api/v1/inspections/{inspection_id}/evidence/{material_id}/annotated"): RestRule(
        needs=frozenset({CASE}), data=JPEG, headers={"Content-Type": "image/jpeg"}),
    ("POST", "/api/v1/inspections/{inspection_id}/close"): RestRule(
        needs=frozenset({CASE}), json=lambda s: {"conclusion": "authz"}),
    ("GET", "/api/v1/stats/today"): ROLE_ONLY,
    ("GET", "/api/v1/stats/queue-over-day"): ROLE_ONLY,
    ("GET", "/api/v1/stats/csat-weeks"): ROLE_ONLY,
    ("GET", "/api/v1/reports/agents"): RestRule(query=_period),
    ("GET", "/api/v1/reports/townships"): RestRule(query=_period),
    **{("GET", f"/api/v1/reports/{name}.{fmt}"): RestRule(query=_period)
       for name in reports.EXPORTS for fmt in ("csv", "xlsx")},
}

# Routes the app serves outside ROUTE_ROLES, why, and a path anyone may GET.
OUTSIDE_TABLE: dict[tuple[str, str], tuple[str, str | None]] = {
    ("GET", "/ws"): ("authenticates in-band: the WebSocket matrix below", None),
    ("GET", "/metrics"): ("operator network only (deploy/nginx)", "/metrics"),
    ("GET", "/readyz"): ("operator network only (deploy/nginx)", "/readyz"),
    ("GET", "/api/v1/openapi.yaml"): ("the public API description", "/api/v1/openapi.yaml"),
    ("GET", "/{path}"): ("static pages; they log in through the API", "/kiosk/"),
}

# -- WebSocket rules ----------------------------------------------------------------------


@dataclass(frozen=True)
class WsRule:
    needs: frozenset[str] = frozenset()  # any of these relations to the live call
    client: Literal["page", "devices"] | None = None  # only from this client


ON_CALL = WsRule(frozenset({CALL}))

# Insertion order is probe order: monitor before joining media, joining before answering,
# publishing or leaving it. ``auth`` is probed first (last on the anonymous socket, where
# it logs in) and ``call.end`` after everything else, once per principal.
WS_RULES: dict[str, WsRule] = {
    "auth": WsRule(),
    "ping": WsRule(),
    "agent.state": WsRule(),
    "dashboard.subscribe": WsRule(),
    "call.start": WsRule(),
    "call.cancel": WsRule(frozenset({CALL_KIOSK})),
    "call.callback": WsRule(frozenset({CALL_KIOSK})),
    # Claiming and declining are the queue's business: any agent may try (a live call
    # answers conflict / invalid_state).
    "call.accept": WsRule(),
    "call.decline": WsRule(),
    "call.invite": WsRule(frozenset({CALL_AGENT})),
    "call.join": WsRule(frozenset({INVITED})),
    "call.transfer": WsRule(frozenset({CALL_AGENT})),
    "session.monitor": ON_CALL,
    "rtc.join": ON_CALL,
    "rtc.answer": ON_CALL,
    "rtc.candidate": ON_CALL,
    "rtc.publish": ON_CALL,
    "rtc.unpublish": ON_CALL,
    "media.snapshot": ON_CALL,
    "device.capture": ON_CALL,
    "device.idcard": ON_CALL,
    "device.code": WsRule(client="devices"),  # into its own kiosk's live call
    "device.screen": ON_CALL,
    "device.progress": WsRule(client="devices"),  # of requests made to its own kiosk
    "remote.request": ON_CALL,
    "remote.consent": WsRule(frozenset({CALL}), client="page"),
    "remote.input": ON_CALL,
    "remote.state": WsRule(frozenset({CALL}), client="devices"),
    "remote.stop": ON_CALL,
    "surveyor.position": ON_CALL,
    "chat.send": ON_CALL,
    "rtc.leave": ON_CALL,
    "call.end": WsRule(frozenset({CALL_AGENT, CALL_KIOSK})),
}

# Field values for a valid message of each type: by field name, then per type.
MessageFactory = Callable[[Scene, Who, dict[str, str]], Any]
SAMPLES: dict[str, MessageFactory] = {
    "call_id": lambda s, w, t: s.call_id,
    "service_code": lambda s, w, t: "SB-001",
    "text": lambda s, w, t: "authz matrix",
    "sdp": lambda s, w, t: "v=0\r\n",
    "candidate": lambda s, w, t: None,
    "note": lambda s, w, t: "authz matrix",
    "username": lambda s, w, t: "agent3",
    "participant_id": lambda s, w, t: f"kiosk:{s.kiosk_id}/page",
    "granted": lambda s, w, t: False,
    "event": lambda s, w, t: {"type": "move", "x": 1, "y": 1},
    "request_id": lambda s, w, t: "0123456789ab",
    "lat": lambda s, w, t: 30.1,
    "lon": lambda s, w, t: 118.2,
    "accuracy": lambda s, w, t: 12.0,
}
OVERRIDES: dict[str, dict[str, MessageFactory]] = {
    # The anonymous socket logs in with a valid token; the others resend their own.
    "auth": {"token": lambda s, w, t: t[w.token_name] if w.role else t["supervisor"],
             "client": lambda s, w, t: w.client},
    "agent.state": {"state": lambda s, w, t: "away"},  # nobody starts ringing
    "call.transfer": {"to_queue": lambda s, w, t: "no-such-queue"},  # checked after who
    "rtc.publish": {"role": lambda s, w, t: "screen", "kind": lambda s, w, t: "video"},
    "rtc.unpublish": {"role": lambda s, w, t: "screen"},
    "chat.send": {"text": lambda s, w, t: "authz matrix"},  # text or material_id needed
}


def build_message(msg_type: str, who: Who, scene: Scene) -> dict[str, Any]:
    """A valid message of ``msg_type``, filled in from its model."""
    model = p.MESSAGE_TYPES[msg_type]
    fields: dict[str, Any] = {}
    overrides = OVERRIDES.get(msg_type, {})
    for name, info in model.model_fields.items():
        if name in ("v", "id", "type"):
            continue
        if name in overrides:
            fields[name] = overrides[name](scene, who, scene.tokens)
        elif not info.is_required():
            continue
        elif name in SAMPLES:
            fields[name] = SAMPLES[name](scene, who, scene.tokens)
        elif get_origin(info.annotation) is Literal:
            fields[name] = get_args(info.annotation)[0]
        else:
            raise LookupError(f"no sample value for field {name!r} of {msg_type!r}: add one "
                              "to SAMPLES or OVERRIDES in tests/integration/test_authz_matrix.py")
    message = {"v": 1, "type": msg_type, "id": "x", **fields}
    p.MESSAGE_TYPES[msg_type].model_validate(message)  # a probe must be a valid message
    return message


# -- expectations -------------------------------------------------------------------------

ALLOW = "allow"


def expect_rest(roles: tuple[Role, ...] | None, rule: RestRule, who: Who) -> str | int:
    if roles is None:
        return ALLOW
    if who.role is None or who.expired or who.role not in roles:
        return 401
    if rule.needs and not rule.needs & who.relations:
        return 403
    return ALLOW


def expect_ws(msg_type: str, who: Who) -> str:
    if msg_type == "auth":
        if who.role is None:
            return ALLOW  # logs the socket in
        if who.expired:
            return "unauthenticated"
        return "forbidden"  # already authenticated, or not a kiosk on a device socket
    if not who.authenticates:
        return "unauthenticated"
    model = p.MESSAGE_TYPES[msg_type]
    rule = WS_RULES[msg_type]
    if who.role not in ws.ALLOWED.get(model, ()):
        return "forbidden"
    if who.client == "devices" and model not in ws.DEVICE_CLIENT_MESSAGES:
        return "forbidden"
    if rule.client is not None and rule.client != who.client:
        return "forbidden"
    if rule.needs and not rule.needs & who.relations:
        return "forbidden"
    return ALLOW


def rest_mismatch(expected: str | int, status: int) -> bool:
    if status == 0:  # not sent
        return True
    if expected == ALLOW:
        return status in (401, 403) or status >= 500
    return status != expected


def ws_mismatch(expected: str, got: str) -> bool:
    if expected == ALLOW:
        return got in ("forbidden", "unauthenticated", "internal")
    return got != expected


# -- coverage -----------------------------------------------------------------------------


def _app_routes() -> set[tuple[str, str]]:
    app = make_app(load_config(environ={}, overrides={
        "auth": {"secret": "x" * 40}, "db": {"url": "sqlite+aiosqlite:///:memory:"}}))
    routes = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method not in ("HEAD", "*") and path:  # HEAD: the GET's own handler
            routes.add((route.method, str(path)))
    return routes


def rest_rule_problems() -> list[str]:
    problems = []
    served = _app_routes()
    for method, path in sorted(served - set(rest.ROUTE_ROLES) - set(OUTSIDE_TABLE)):
        problems.append(f"{method} {path}: served but not in rest.ROUTE_ROLES (add _allow())")
    for method, path in sorted(set(rest.ROUTE_ROLES) - served):
        problems.append(f"{method} {path}: in rest.ROUTE_ROLES but not served")
    for method, path in sorted(set(OUTSIDE_TABLE) - served):
        problems.append(f"{method} {path}: in OUTSIDE_TABLE but not served")
    for method, path in sorted(set(rest.ROUTE_ROLES) - set(REST_RULES)):
        problems.append(f"{method} {path}: no expectation rule in REST_RULES "
                        "(tests/integration/test_authz_matrix.py)")
    # A rule for a route not (or no longer) in the table is not an error: rules may land
    # before their route does.
    for key, rule in REST_RULES.items():
        roles = rest.ROUTE_ROLES.get(key, ())
        if key in rest.ROUTE_ROLES and rule.public != (roles is None):
            problems.append(f"{key[0]} {key[1]}: ROUTE_ROLES says "
                            f"{'public' if roles is None else roles}, REST_RULES says "
                            f"{'public' if rule.public else 'needs a token'}")
    return problems


def ws_rule_problems() -> list[str]:
    problems = []
    for msg_type in sorted(set(p.MESSAGE_TYPES) - set(WS_RULES)):
        problems.append(f"{msg_type!r}: no expectation rule in WS_RULES "
                        "(tests/integration/test_authz_matrix.py)")
    for msg_type, model in sorted(p.MESSAGE_TYPES.items()):
        if model is not p.Auth and model not in ws.ALLOWED:
            problems.append(f"{msg_type!r}: not in ws.ALLOWED (nobody may send it)")
    return problems


def test_every_route_has_an_access_rule_and_an_expectation() -> None:
    problems = rest_rule_problems()
    assert not problems, "\n".join(problems)


def test_every_message_type_has_an_expectation() -> None:
    problems = ws_rule_problems()
    assert not problems, "\n".join(problems)


# -- REST matrix --------------------------------------------------------------------------

_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def _fill(path: str, scene: Scene) -> str | None:
    """``path`` with the scene's ids in it; None if the scene has no value for a part."""
    values: dict[str, object] = {
        "case_id": scene.case_id, "call_id": scene.call_id, "material_id": scene.material_id,
        "id_read_id": scene.id_read_id, "upload_id": scene.upload_id,
        "code": scene.booking_code, "inspection_id": scene.inspection_id, "key": "site"}

    if any(name not in values for name in _PARAM.findall(path)):
        return None
    return _PARAM.sub(lambda m: str(values[m.group(1)]), path)


@dataclass(frozen=True)
class Cell:
    what: str  # "GET /api/v1/…" or a message type
    who: str
    expected: str | int
    got: str | int
    detail: str = ""

    def __str__(self) -> str:
        if self.who == "-":
            return f"{self.what}: no expectation rule {self.detail}"
        want = "allowed" if self.expected == ALLOW else f"denied {self.expected}"
        return f"{self.what} as {self.who}: expected {want}, got {self.got} {self.detail}"


async def _rest_cell(server: Server, scene: Scene, method: str, path: str,
                     rule: RestRule, who: Who) -> tuple[int, str]:
    headers = dict(rule.headers)
    if who.role is not None:
        headers["Authorization"] = f"Bearer {scene.tokens[who.token_name]}"
    kwargs: dict[str, Any] = {}
    if rule.json is not None:
        kwargs["json"] = rule.json(scene)
    if rule.data is not None:
        kwargs["data"] = rule.data
    if rule.query is not None:
        kwargs["params"] = rule.query(scene)
    url = _fill(path, scene)
    if url is None:
        return 0, "the scene has no value for a path parameter (add one to _fill)"
    async with server.http.request(method, server.url + url, headers=headers,
                                   **kwargs) as r:
        body = await r.read()
        return r.status, body[:160].decode(errors="replace")


async def rest_matrix(server: Server, scene: Scene) -> list[Cell]:
    cells = []
    for (method, path), roles in rest.ROUTE_ROLES.items():
        rule = REST_RULES.get((method, path))
        if rule is None:
            cells.append(Cell(f"{method} {path}", "-", "a rule", "none",
                              "(add it to REST_RULES)"))
            continue
        for who in PRINCIPALS:
            expected = expect_rest(roles, rule, who)
            status, body = await _rest_cell(server, scene, method, path, rule, who)
            cells.append(Cell(f"{method} {path}", who.name, expected, status,
                              body if rest_mismatch(expected, status) else ""))
    for (method, _), (_, example) in OUTSIDE_TABLE.items():
        if example is not None:
            async with server.http.request(method, server.url + example) as r:
                cells.append(Cell(f"{method} {example}", ANONYMOUS.name, ALLOW, r.status))
    return cells


def _verdict(cells: list[Cell], mismatch: Callable[[Cell], bool]) -> list[str]:
    return [str(c) for c in cells if c.who == "-" or mismatch(c)]


def _summary(kind: str, cells: list[Cell]) -> str:
    for cell in cells:
        logger.debug("%s", cell)
    allow = sum(1 for c in cells if c.expected == ALLOW)
    return f"{kind} matrix: {len(cells)} cells, {allow} allow, {len(cells) - allow} deny"


async def test_rest_matrix(server: Server) -> None:
    scene = await build_scene(server)
    try:
        cells = await rest_matrix(server, scene)
    finally:
        await scene.close()
    logger.info(_summary("REST", cells))
    bad = _verdict(cells, lambda c: rest_mismatch(c.expected, int(c.got)))
    assert not bad, f"{len(bad)} of {len(cells)} REST cells wrong:\n" + "\n".join(bad)


# -- WebSocket matrix ---------------------------------------------------------------------


async def _connect(server: Server, scene: Scene, who: Who) -> WsProbe:
    probe = await WsProbe.open(server)
    if who.authenticates:
        got = await probe.probe({"v": 1, "type": "auth", "token": scene.tokens[who.token_name],
                                 "client": who.client})
        assert got == "ok", f"{who.name} could not log in: {got}"
    return probe


def _order(who: Who) -> list[str]:
    middle = [t for t in WS_RULES if t in p.MESSAGE_TYPES and t not in ("auth", "call.end")]
    return [*middle, "auth"] if who.role is None else ["auth", *middle]


def _ending_order() -> list[Who]:
    # Those who may end the call go last, so every refusal is tested on a live call.
    last = {"agent": 1, "kiosk": 2}
    return sorted(WS_PRINCIPALS, key=lambda w: last.get(w.name, 0))


async def ws_matrix(server: Server, scene: Scene) -> list[Cell]:
    cells = [Cell(t, "-", "a rule", "none", "(add it to WS_RULES)")
             for t in p.MESSAGE_TYPES if t not in WS_RULES]

    async def run(who: Who, types: list[str]) -> None:
        probe = await _connect(server, scene, who)
        try:
            for msg_type in types:
                expected = expect_ws(msg_type, who)
                got = await probe.probe(build_message(msg_type, who, scene))
                cells.append(Cell(msg_type, who.name, expected, got))
        finally:
            await probe.close()

    for who in WS_PRINCIPALS:
        await run(who, _order(who))
    for who in _ending_order():
        await run(who, ["call.end"])
    return cells


async def test_ws_matrix(server: Server) -> None:
    scene = await build_scene(server)
    try:
        cells = await ws_matrix(server, scene)
    finally:
        await scene.close()
    logger.info(_summary("WebSocket", cells))
    bad = _verdict(cells, lambda c: ws_mismatch(str(c.expected), str(c.got)))
    assert not bad, f"{len(bad)} of {len(cells)} WebSocket cells wrong:\n" + "\n".join(bad)
