"""Benchmark: hub CPU and frame loss for N two-way kiosk <-> agent sessions.

    python -m tests.bench.relay --sessions 10 --seconds 30 --mode forward
    python -m tests.bench.relay --sessions 10 --seconds 30 --mode all
    python -m tests.bench.relay --seconds 30 --mode forward,janus --sweep 10,20,30,50

Each session is a simulated kiosk and agent, both publishing 640x480 VP8 at 15 fps plus
Opus and receiving the other's, with one silent monitor (receive-only) per 5 sessions;
recording is on. The clients run in a few worker processes
(``tests.bench.relay_clients``), send pre-encoded packets and count frames without
decoding, past aiortc's per-packet paths once connected (``tests.bench.relay_wire``;
``--aiortc-clients`` for aiortc's own), so the machine's CPU goes to the hub. Hubs (``--mode``):

- ``forward``: the real server (``vwindow serve``, SQLite in a temp dir) forwarding
  encoded frames and recording them (``media.forward = true``, ``media.record = true``).
  ``--nodes K`` runs K servers on one PostgreSQL database instead, as a deployment
  scales out: session i's kiosk, agent and monitor all sign in at node i mod K, whose
  hub then carries that session's media. The hub's CPU is then the nodes' and the
  database's together.
- ``transcode``: the same server with ``media.forward = false`` (decode + re-encode per
  subscriber); the server cannot record in that mode, so the bench adds aiortc's
  ``MediaRecorder`` per publication (``--transcode-recorder none`` to leave it out).
- ``janus``: Debian's ``/usr/bin/janus`` videoroom, one room per session, recording
  ``.mjr`` files (``tests.bench.janus``).

After every stream delivers frames and a warm-up, the hub's CPU time (all threads, from
/proc) is read over ``--seconds``. Per stream, frame loss is the share of the frames the
publisher sent in that window that never arrived: matched by RTP timestamp when the
stamps fit one offset, else 1 - received / sent by count (±1 frame at the window's
edges). The delivered fps is what arrived in the window. The last line
printed is one JSON object; with several modes it holds each mode's figures and the
ratios to ``forward`` (``janus_ratio`` = Janus's CPU per session / forward's, at the
largest N both carried; ``…_ratio_with_loss`` when one of them dropped frames); with
``--sweep`` the largest N with loss <= ``--max-loss``, and what stopped the sweep (the
hub's loss, or clients starved of CPU: inconclusive). Share the machine with nothing
else: with two cores, the clients cost about as much CPU as a forwarding hub.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import re
import shutil
import socket
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tests.bench.janus import JanusServer, janus_missing
from tests.bench.relay_clients import WorkerOptions, worker_main
from tests.bench.relay_media import MediaSpec
from tests.bench.relay_server import (
    ProcessStats,
    VWindowServer,
    children_cpu_seconds,
    drops_since,
    loadavg,
    machine_cpu,
    udp_drops,
)
from tests.pgserver import PgServer

MODES = ("forward", "transcode", "janus")


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def primary_ipv4() -> str:
    """The address this machine routes out of (Janus gathers ICE there, not on lo)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
            address: str = sock.getsockname()[0]
        except OSError:
            return "127.0.0.1"
    return address


class Hub:
    """The processes under test: one or more vwindow server nodes, or Janus."""

    def __init__(self, mode: str, workdir: Path, sessions: int,
                 args: argparse.Namespace) -> None:
        self.mode = mode
        self.janus: JanusServer | None = None
        self.servers: list[VWindowServer] = []
        self.pg: PgServer | None = None
        self._args = args
        self._workdir = workdir
        self._sessions = sessions
        if mode == "janus":
            self.janus = JanusServer(workdir, ice_address=args.janus_ice_address)

    def start(self) -> None:
        if self.janus is not None:
            self.janus.start()
            return
        args, nodes = self._args, self._args.nodes
        db_url = ""
        if nodes > 1:  # the nodes share one PostgreSQL database, as deployed
            self.pg = PgServer()
            self.pg.start()
            db_url = self.pg.create_database("vw_bench_relay")
        for n in range(nodes):
            server = VWindowServer(
                self._workdir / f"node-{n}" if nodes > 1 else self._workdir, self._sessions,
                forward=self.mode == "forward", record=not args.no_record,
                mediarecorder=(self.mode == "transcode" and not args.no_record
                               and args.transcode_recorder == "mediarecorder"),
                db_url=db_url, node_id=f"node-{n}", prepare=n == 0)
            self.servers.append(server)
            server.start()

    @property
    def pids(self) -> list[int]:
        return [self.janus.pid] if self.janus is not None else [s.pid for s in self.servers]

    @property
    def urls(self) -> tuple[str, ...]:
        return ((self.janus.url,) if self.janus is not None
                else tuple(s.url for s in self.servers))

    def database_cpu_seconds(self) -> dict[int, float]:
        """The shared PostgreSQL's processes' CPU seconds (none with one node)."""
        if self.pg is None:
            return {}
        postmaster = int((self.pg.dir / "data" / "postmaster.pid").read_text().split()[0])
        return children_cpu_seconds(postmaster)

    def stop(self) -> None:
        try:
            if self.janus is not None:
                self.janus.stop()
            for server in self.servers:
                server.stop()
        finally:
            if self.pg is not None:
                self.pg.stop()  # pg_ctl daemonized it: nothing else would


def _split(sessions: int, workers: int) -> list[tuple[int, ...]]:
    parts: list[list[int]] = [[] for _ in range(workers)]
    for i in range(sessions):
        parts[i % workers].append(i)
    return [tuple(p) for p in parts if p]


def _expect(conn: Connection, kind: str, timeout: float) -> Any:
    if not conn.poll(timeout):
        raise TimeoutError(f"a client worker sent no {kind!r} within {timeout:.0f} s")
    msg = conn.recv()
    if msg[0] != kind:
        raise RuntimeError(f"a client worker sent {msg[0]!r}, expected {kind!r}")
    return msg[1] if len(msg) > 1 else None


def trial(mode: str, sessions: int, args: argparse.Namespace) -> dict[str, Any]:
    """One run: start the hub and the clients, measure, tear down."""
    workdir = Path(tempfile.mkdtemp(prefix=f"vw-relay-{mode}-"))
    hub = Hub(mode, workdir, sessions, args)
    spec = MediaSpec(fps=args.fps, video_kbps=args.video_kbps)
    workers = args.workers or max(1, min(4, math.ceil(sessions / 6)))
    ctx = multiprocessing.get_context("spawn")
    procs: list[Any] = []
    conns: list[Connection] = []
    result: dict[str, Any] = {"mode": mode, "sessions": sessions}
    try:
        hub.start()
        ice = args.janus_ice_address if mode == "janus" else "127.0.0.1"
        for part in _split(sessions, workers):
            opts = WorkerOptions(
                mode=mode, urls=hub.urls, sessions=part, monitor_every=args.monitor_every,
                spec=spec, ice_address=ice, nice=args.client_nice,
                wire=not args.aiortc_clients,
                janus_rec_dir=(str(hub.janus.rec_dir) if hub.janus and not args.no_record
                               else ""))
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child, opts),
                               name=f"relay-clients-{len(procs)}", daemon=True)
            proc.start()
            procs.append(proc)
            conns.append(parent)
        setup_timeout = 120 + 4 * sessions
        ready = [_expect(c, "ready", setup_timeout) for c in conns]
        errors = [r["error"] for r in ready if r["error"]]
        result["setup_s"] = round(max(r["setup_s"] for r in ready), 1)
        result["video_kbps"] = round(ready[0]["video_kbps"])
        if errors:
            raise RuntimeError("; ".join(errors))
        time.sleep(args.warmup)

        hub_stats = [ProcessStats(pid) for pid in hub.pids]
        client_stats = [ProcessStats(p.pid) for p in procs if p.pid is not None]
        load_before = loadavg()
        busy0, total0 = machine_cpu()
        clients0 = sum(s.cpu_seconds() for s in client_stats)
        main0 = [h.cpu_seconds(main_thread=True) for h in hub_stats]
        wait0 = [h.runqueue_wait_s() for h in hub_stats]
        db0 = hub.database_cpu_seconds()
        client_pids = [p.pid for p in procs if p.pid is not None]
        drops0 = (udp_drops(hub.pids), udp_drops(client_pids))
        cpu0, t0 = sum(h.cpu_seconds() for h in hub_stats), time.monotonic()
        rss_max = sum(h.rss_mb() for h in hub_stats)
        while time.monotonic() < t0 + args.seconds:
            time.sleep(min(1.0, max(0.0, t0 + args.seconds - time.monotonic())))
            rss_max = max(rss_max, sum(h.rss_mb() for h in hub_stats))
        cpu1, t1 = sum(h.cpu_seconds() for h in hub_stats), time.monotonic()
        db1 = hub.database_cpu_seconds()
        main1 = [h.cpu_seconds(main_thread=True) for h in hub_stats]
        wait1 = [h.runqueue_wait_s() for h in hub_stats]
        clients1 = sum(s.cpu_seconds() for s in client_stats)
        busy1, total1 = machine_cpu()
        for conn in conns:
            conn.send(("measure", t0, t1))
        reports = [_expect(c, "streams", 120) for c in conns]  # after the late arrivals
        drops1 = (udp_drops(hub.pids), udp_drops(client_pids))
        streams = [s for r in reports for s in r["streams"]]

        if args.keep:
            (workdir / "streams.json").write_text(json.dumps(streams, indent=1))
        media_s = t1 - t0
        # With several nodes the database is part of the hub: its CPU counts.
        database_cpu = sum(v - db0.get(pid, 0.0) for pid, v in db1.items())
        hub_cpu = cpu1 - cpu0 + database_cpu
        mains = [b - a for a, b in zip(main0, main1, strict=True)]
        waits = [b - a for a, b in zip(wait0, wait1, strict=True)]
        video = [s for s in streams if s["kind"] == "video"]
        worst = sorted(streams, key=lambda s: s["loss"], reverse=True)[:3]
        ncpu = multiprocessing.cpu_count()
        result.update({
            "cpu_s_per_media_s_per_session": round(hub_cpu / media_s / sessions, 4),
            "fps_min": round(min(s["fps"] for s in video), 2) if video else 0.0,
            "loss_max": round(max(s["loss"] for s in streams), 4) if streams else 1.0,
            "rss_mb": round(rss_max, 1),
            "hub_cpu_pct": round(100 * hub_cpu / media_s, 1),
            # The busiest node's event loop (each node has one).
            "hub_main_thread_pct": round(100 * max(mains) / media_s, 1),
            "hub_main_thread_runqueue_wait_pct": round(100 * max(waits) / media_s, 1),
            "nodes": len(hub_stats),
            "database_cpu_pct": round(100 * database_cpu / media_s, 1),
            "clients_cpu_pct": round(100 * (clients1 - clients0) / media_s, 1),
            # Datagrams the kernel dropped at a full receive queue, from the window's
            # start until its frames were counted: on the clients' side that loss is
            # the clients', not the hub's.
            # (A socket closed meanwhile took its count with it.)
            "udp_drops_hub": drops_since(drops0[0], drops1[0]),
            "udp_drops_clients": drops_since(drops0[1], drops1[1]),
            "machine_busy_pct": round(100 * (busy1 - busy0) / max(1.0, total1 - total0), 1),
            "cores": ncpu,
            "loadavg_before": load_before,
            "loss_max_video": round(max((s["loss"] for s in video), default=1.0), 4),
            "loss_max_audio": round(max((s["loss"] for s in streams
                                         if s["kind"] == "audio"), default=1.0), 4),
            "loss_counted_max": round(max((s["loss_counted"] for s in streams),
                                          default=1.0), 4),
            "streams_matched": sum(1 for s in streams if s["matched"]),
            "latency_p95_ms_max": max((s["latency_p95_ms"] for s in streams
                                       if s["latency_p95_ms"] is not None), default=None),
            "streams": len(streams),
            "frames_received": sum(s["received"] for s in streams),
            "sender_skipped_frames": sum(r["skipped"] for r in reports),
            "frames_sent_per_stream_min": min((s["sent"] for s in streams), default=0),
            "keyframes_on_request": sum(r["keyframes"] for r in reports),
            "clients": _clients(reports),
            "worst_streams": [
                f"s{s['session']} {s['receiver']}<-{s['publisher']} {s['kind']} "
                f"{s['received']}/{s['sent']} lost runs (s after t0, frames) "
                f"{s['lost_runs']}" for s in worst if s["loss"] > 0],
            "seconds": round(media_s, 1),
            "workers": len(procs),
        })
        # Senders that could not keep their own pace make the loss figure about this
        # machine, not the hub: flag the run. A sender that stopped had its peer
        # connection closed under it (by the hub, or by ICE consent expiry).
        result["senders_late_max"] = round(max(s["sender_late"] for s in streams), 3)
        result["clients_starved"] = result["senders_late_max"] > 0.05
        result["streams_whose_sender_stopped"] = sum(1 for s in streams if s["sender_stopped"])
    except Exception as err:
        result["error"] = f"{type(err).__name__}: {err}"
    finally:
        for conn in conns:
            try:
                conn.send(("stop",))
            except OSError:
                pass
        for conn in conns:
            try:
                _expect(conn, "stopped", 60)
            except Exception:
                pass
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        hub.stop()
        logs = [srv.log_path.read_text(errors="replace") for srv in hub.servers
                if srv.log_path.exists()]
        if logs and "error" not in result:
            # aioice closes a peer connection whose consent checks (one STUN request,
            # 0.5 s to answer) fail six times running: a hub or client starved of CPU.
            result["hub_ice_consent_expired"] = sum(log.count("Consent to send expired")
                                                    for log in logs)
            lags = [int(m) for log in logs
                    for m in re.findall(r"event loop lag max (\d+) ms", log)]
            result["hub_loop_lag_max_ms"] = max(lags, default=None)
        if args.keep:
            result["workdir"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def _clients(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Which clients ran; for the wire clients, the RTP packets they counted themselves
    and those that went through aiortc instead (a stream they failed to recognise)."""
    wires = [r["wire"] for r in reports if r.get("wire")]
    if not wires:
        return {"path": "aiortc"}
    return {"path": "wire", "counted": sum(w["counted"] for w in wires),
            "counted_video": sum(w["counted_video"] for w in wires),
            "to_aiortc": sum(w["to_aiortc"] for w in wires)}


def _summary_line(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['mode']:9} N={r['sessions']:3}  FAILED: {r['error']}"
    nodes = (f"{r['nodes']} nodes + PostgreSQL {r['database_cpu_pct']}%, "
             if r.get("nodes", 1) > 1 else "")
    return (f"{r['mode']:9} N={r['sessions']:3}  {r['cpu_s_per_media_s_per_session']:.4f} "
            f"CPU-s/media-s/session (hub {nodes}{r['hub_cpu_pct']}% of a core, busiest "
            "main thread "
            f"{r['hub_main_thread_pct']}% + {r['hub_main_thread_runqueue_wait_pct']}% waiting "
            f"for a CPU, clients "
            f"{r['clients_cpu_pct']}%, machine {r['machine_busy_pct']}% of {r['cores']} "
            f"cores)  fps_min {r['fps_min']}  loss_max {r['loss_max']:.2%} "
            f"(video {r['loss_max_video']:.2%}, audio {r['loss_max_audio']:.2%})  "
            f"latency p95 ≤ {r['latency_p95_ms_max']} ms  "
            f"rss {r['rss_mb']} MB  load {r['loadavg_before']}"
            + ("  CLIENTS STARVED (senders fell behind)" if r["clients_starved"] else "")
            + (f"  {r['streams_whose_sender_stopped']} streams' senders stopped (peer "
               "connection closed)" if r["streams_whose_sender_stopped"] else "")
            + (f"  UDP datagrams dropped at full receive queues: hub {r['udp_drops_hub']}, "
               f"clients {r['udp_drops_clients']}"
               if r["udp_drops_hub"] or r["udp_drops_clients"] else ""))


def _figures(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("sessions", "cpu_s_per_media_s_per_session", "fps_min", "loss_max", "rss_mb",
            "clients_starved")
    out = {k: r.get(k) for k in keys}
    if "error" in r:
        out["error"] = r["error"]
    return out


def _modes(text: str) -> list[str]:
    modes = list(MODES) if text == "all" else [m.strip() for m in text.split(",") if m]
    for mode in modes:
        if mode not in MODES:
            raise argparse.ArgumentTypeError(f"unknown mode {mode!r} (one of {MODES} or all)")
    return modes


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--mode", type=_modes, default=["forward"],
                        help="forward, transcode, janus, a comma list, or all")
    parser.add_argument("--sweep", help="comma list of session counts, e.g. 10,20,30,50: "
                        "find the largest N with loss <= --max-loss")
    parser.add_argument("--max-loss", type=float, default=0.01)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=0,
                        help="client processes (default: one per 6 sessions, 1-4)")
    parser.add_argument("--monitor-every", type=int, default=5,
                        help="one silent monitor per this many sessions (0: none)")
    parser.add_argument("--client-nice", type=int, default=0,
                        help="niceness of the client processes (0: same as the hub)")
    parser.add_argument("--nodes", type=_at_least_one, default=1,
                        help="vwindow server nodes (forward, transcode): with more than "
                        "one they share a PostgreSQL database and session i's clients all "
                        "use node i mod NODES, whose hub carries its media")
    parser.add_argument("--aiortc-clients", action="store_true",
                        help="clients on aiortc's own send and receive paths "
                        "(before session 14; see tests.bench.relay_wire)")
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--video-kbps", type=int, default=600)
    parser.add_argument("--no-record", action="store_true", help="recording off")
    parser.add_argument("--transcode-recorder", choices=["mediarecorder", "none"],
                        default="mediarecorder")
    parser.add_argument("--janus-ice-address", default=primary_ipv4(),
                        help="the one address Janus and its clients use for ICE "
                        "(Janus gathers no loopback candidates)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    modes: list[str] = args.mode
    if "janus" in modes:
        problem = janus_missing()
        if problem:
            _log(f"cannot run --mode janus: {problem}")
            return 2
    counts = ([int(n) for n in args.sweep.split(",")] if args.sweep else [args.sessions])
    _log(f"relay bench: modes {','.join(modes)}, sessions {counts}, {args.seconds:g} s, "
         f"load {loadavg()}, {multiprocessing.cpu_count()} cores")

    results: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    sustained: dict[str, int] = {}
    stopped_by: dict[str, str] = {}
    for mode in modes:
        for n in counts:
            r = trial(mode, n, args)
            results[mode].append(r)
            _log(_summary_line(r))
            _log("  " + json.dumps(r))
            ok = "error" not in r and r["loss_max"] <= args.max_loss
            if ok:
                sustained[mode] = max(sustained.get(mode, 0), n)
            elif args.sweep:
                # More sessions will not do better. Say whether this machine's clients
                # (senders behind their own pace) or the hub gave out first.
                stopped_by[mode] = (
                    f"N={n}: " + ("error" if "error" in r else
                                  "clients starved (inconclusive)" if r["clients_starved"]
                                  else f"loss {r['loss_max']:.1%}"))
                break

    summary: dict[str, Any]
    if len(modes) == 1 and not args.sweep:
        summary = _figures(results[modes[0]][0])
        summary["mode"] = modes[0]
    else:
        summary = {"sessions": counts if args.sweep else counts[0], "seconds": args.seconds}
        for mode in modes:
            runs = results[mode]
            summary[mode] = _figures(runs[0]) if not args.sweep else [_figures(r) for r in runs]
        if args.sweep:
            summary["max_sessions_at_loss"] = args.max_loss
            summary["max_sessions"] = {m: sustained.get(m, 0) for m in modes}
            summary["stopped_by"] = stopped_by
        if "forward" in modes:
            for mode in modes:
                if mode == "forward":
                    continue
                ratio = _ratio(results["forward"], results[mode], args.max_loss)
                if ratio is not None:
                    summary[f"{mode}_ratio"] = ratio[0]
                    if args.sweep:
                        summary[f"{mode}_ratio_at_sessions"] = ratio[1]
                    at = [r for r in results[mode] + results["forward"]
                          if r["sessions"] == ratio[1] and "error" not in r]
                    if any(r["loss_max"] > args.max_loss for r in at):
                        # A hub that dropped frames did less than its load: the ratio
                        # is only indicative.
                        summary[f"{mode}_ratio_with_loss"] = True
    print(json.dumps(summary))
    return 0


def _ratio(forward: list[dict[str, Any]], other: list[dict[str, Any]],
           max_loss: float) -> tuple[float, int] | None:
    """Other mode's hub CPU per session over forward's, at the largest N where both
    carried their load (else the largest N both ran: a hub that drops frames does less)."""
    base = {r["sessions"]: r for r in forward if "error" not in r}
    common = [r for r in other if "error" not in r and r["sessions"] in base]
    if not common:
        return None
    clean = [r for r in common
             if r["loss_max"] <= max_loss and base[r["sessions"]]["loss_max"] <= max_loss]
    r = (clean or common)[-1]
    denominator = base[r["sessions"]]["cpu_s_per_media_s_per_session"]
    if not denominator:
        return None
    return round(r["cpu_s_per_media_s_per_session"] / denominator, 2), r["sessions"]


if __name__ == "__main__":
    sys.exit(main())
