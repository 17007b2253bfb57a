"""The ``vwindow`` command: ``demo``, ``serve``, ``kiosk``, ``migrate``, ``backup``,
``restore``, ``purge``, ``enrolment``, ``audit verify``.

This is the one module that wires every package together; the imports of ``signaling``,
``media`` and ``devices`` are inside the functions so that ``vwindow`` itself never
depends on them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from vwindow.config import Config, KioskConfig, load_config
from vwindow.errors import VWindowError

logger = logging.getLogger(__name__)

PURGE_BUSY = 75
"""``vwindow purge``'s exit status when another node is purging (sysexits' EX_TEMPFAIL:
nothing was done; try again later)."""


def _setup_logging(verbose: bool, log_format: str = "text", node_id: str | None = None) -> None:
    from vwindow.logjson import setup_logging

    setup_logging(log_format, verbose=verbose, node_id=node_id)  # type: ignore[arg-type]


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    if getattr(args, "host", None):
        overrides.setdefault("server", {})["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides.setdefault("server", {})["port"] = args.port
    if getattr(args, "db", None):
        overrides.setdefault("db", {})["url"] = args.db
    if getattr(args, "data", None):
        data = Path(args.data)
        overrides.setdefault("storage", {})["root"] = str(data / "files")
        if not getattr(args, "db", None):
            overrides.setdefault("db", {})["url"] = f"sqlite+aiosqlite:///{data / 'vwindow.db'}"
    config = load_config(getattr(args, "config", None), overrides=overrides)
    if not config.auth.secret:
        # A stable per-installation key, so tokens survive a restart of a single node.
        key_file = Path(config.storage.root).parent / "token-secret"
        key_file.parent.mkdir(parents=True, exist_ok=True)
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(32))
            key_file.chmod(0o600)
        config = config.model_copy(update={"auth": config.auth.model_copy(
            update={"secret": key_file.read_text().strip()})})
    return config


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _settle_heap() -> None:
    """Move what start-up made (modules, tables, compiled statements: most of the heap)
    out of the collector's reach: a full collection otherwise walks all of it, stalling
    every call's media and every request for ~0.1 s each time."""
    import gc

    gc.collect()
    gc.freeze()


async def _serve(config: Config, *, demo: bool, devices: str | None) -> None:
    from aiohttp import web

    from signaling.app import make_app
    from signaling.services import SERVICES

    app = make_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port)
    await site.start()
    port = int(runner.addresses[0][1])  # the real port, also when 0 asked the OS to pick
    _settle_heap()
    base = f"http://{config.server.host}:{port}"
    agent = None
    try:
        if demo:
            from vwindow.seed import seed_demo

            logins = await seed_demo(app[SERVICES].db)
            if devices:
                # The simulated kiosk: a document camera and an ID card on the reader.
                slots = {"doccam": {"driver": devices}, "idcard": {"driver": "sim"}}
                kiosk = config.kiosk.model_copy(update={
                    "server": base, "code": logins.kiosk_code, "key": logins.kiosk_key,
                    "spool_dir": str(Path(config.storage.root).parent / "kiosk-spool"),
                    **{k: config.kiosk.doccam.model_validate(v) for k, v in slots.items()}})
                agent = await _start_kiosk_agent(kiosk)
            _print_demo(base, logins)
        else:
            print(f"vwindow serving on {base}  (database: {config.db.url.split('@')[-1]})",
                  flush=True)
        await _wait_for_signal()
    finally:
        if agent is not None:
            await agent.stop()
        await runner.cleanup()


async def _start_kiosk_agent(kiosk: KioskConfig) -> Any:
    from signaling.kiosk_hardware import build_devices
    from signaling.kioskagent import KioskAgent

    devices = build_devices(kiosk)
    for kind, why in devices.errors.items():
        print(f"vwindow kiosk: {kind} unavailable: {why}", file=sys.stderr, flush=True)
    pipelines = None
    if kiosk.blur_threshold is not None or kiosk.max_glare_fraction != 0.01:
        from devices.scan.pipeline import ScanPipeline

        extra: dict[str, Any] = {"max_glare_fraction": kiosk.max_glare_fraction}
        if kiosk.blur_threshold is not None:
            extra["blur_threshold"] = kiosk.blur_threshold
        pipelines = {mode: ScanPipeline(mode=mode, **extra) for mode in ("color", "bw")}
    agent = KioskAgent(kiosk.server, kiosk.code, kiosk.key, devices.camera,
                       idcard=devices.idcard, scanner=devices.scanner,
                       screen=devices.screen, remote=kiosk.remote_control,
                       spool_dir=kiosk.spool_dir, hotplug_every_s=kiosk.hotplug_every_s,
                       pipelines=pipelines)
    await agent.start()
    return agent


def _print_demo(base: str, logins: Any) -> None:
    print(f"""
vwindow demo is running — 远程虚拟窗口演示已启动

  Start page 首页            {base}/
  Kiosk 乡镇自助终端         {base}/kiosk/        kiosk code {logins.kiosk_code} · key {logins.kiosk_key}
  Agent console 坐席工作台   {base}/agent/        {' / '.join(logins.agents)} · password {logins.password}
  Supervisor 值班长看板      {base}/supervisor/   {logins.supervisor} · password {logins.password}
  Surveyor 现场踏勘          {base}/surveyor/     (open the link an agent generates in a call)

A simulated document camera (高拍仪) is connected for the kiosk. Press Ctrl-C to stop.
""", flush=True)


def _kiosk_config(args: argparse.Namespace) -> KioskConfig:
    kiosk = load_config(args.config).kiosk
    update: dict[str, Any] = {}
    for flag, key in (("server", "server"), ("kiosk", "code"), ("key", "key"),
                      ("spool", "spool_dir")):
        if getattr(args, flag, None):
            update[key] = getattr(args, flag)
    for kind in ("devices", "idcard", "scanner"):
        driver = getattr(args, kind, None)
        if driver:
            slot = "doccam" if kind == "devices" else kind
            update[slot] = getattr(kiosk, slot).model_copy(update={"driver": driver})
    kiosk = kiosk.model_copy(update=update)
    if not args.list_devices and not (kiosk.code and kiosk.key):
        raise VWindowError("the kiosk code and key are needed: --kiosk and --key, or "
                           "[kiosk] code/key in the --config file")
    return kiosk


async def _kiosk(args: argparse.Namespace) -> None:
    kiosk = _kiosk_config(args)
    if args.list_devices:
        from signaling.kiosk_hardware import list_devices

        print(list_devices(kiosk), flush=True)
        return
    agent = await _start_kiosk_agent(kiosk)
    print(f"kiosk device agent for {kiosk.code} connected to {kiosk.server}", flush=True)
    try:
        await _wait_for_signal()
    finally:
        await agent.stop()


async def _backup(config: Config, out: str) -> int:
    from vwindow.backup import backup

    report = await backup(config, out)
    print(f"backup written to {report.path}: {sum(report.tables.values())} rows in "
          f"{len(report.tables)} tables, {report.files} files ({report.file_bytes} bytes), "
          f"schema {report.revision}")
    return 0


async def _restore(config: Config, source: str, *, force: bool, check: bool) -> int:
    from vwindow.backup import restore, verify_archive

    if check:
        report = await verify_archive(source)
        print(f"{source}: intact — {sum(report.tables.values())} rows, {report.files} "
              f"files, schema {report.revision}")
        return 0
    report = await restore(config, source, force=force)
    print(f"restored {sum(report.tables.values())} rows and {report.files} files from "
          f"{source} (schema {report.revision}); start the nodes to upgrade the schema")
    return 0


async def _enrolment(config: Config, args: argparse.Namespace) -> int:
    from vwindow.db import Database
    from vwindow.enrolment import Enrolment

    db = Database(config.db.url)
    try:
        await db.start()
        enrolment = Enrolment(db, config.auth.secret, config.auth.previous_secrets)
        if args.name or args.township:
            if not (args.name and args.township):
                print("vwindow: --name and --township go together (a new kiosk)",
                      file=sys.stderr)
                return 2
            await enrolment.register_kiosk(args.kiosk, args.name, args.township,
                                           actor="cli:enrolment")
        issued = await enrolment.issue(args.kiosk, actor="cli:enrolment",
                                       ttl_s=int(args.ttl_hours * 3600))
    finally:
        await db.stop()
    print(f"enrolment code for {issued.kiosk_code} ({issued.kiosk_name}):\n\n    "
          f"{issued.code}\n\nvalid once, until {issued.expires_at:%Y-%m-%d %H:%M} UTC. On the "
          f"kiosk PC: deploy/kiosk/setup-kiosk.sh --server URL --kiosk {issued.kiosk_code} "
          f"--code {issued.code}")
    return 0


async def _purge(config: Config, *, dry_run: bool) -> int:
    from vwindow.db import Database
    from vwindow.models import utcnow
    from vwindow.retention import purge, purge_exclusively
    from vwindow.store import FileStore

    db = Database(config.db.url)
    # No store.start(): it empties tmp/, which a running node may be writing into.
    store = FileStore(config.storage.root)
    try:
        await db.start()
        if dry_run:
            # Writes nothing, so it takes no lock and records no run: its counts may
            # include what a node's purge is removing at the same moment.
            report = await purge(db, store, config.retention, utcnow(), dry_run=True)
        else:
            done = await purge_exclusively(db, store, config.retention, utcnow())
            if done is None:
                print("vwindow purge: another node is purging now; nothing done",
                      file=sys.stderr)
                return PURGE_BUSY
            report = done
    finally:
        await db.stop()
    verb = "would remove" if dry_run else "removed"
    print(f"retention: {verb} {report.materials} materials ({report.recordings} recordings) "
          f"and {report.id_reads} ID-card reads of {report.cases} cases; "
          f"{report.files} files, {report.bytes} bytes")
    return 0


async def _migrate(config: Config) -> None:
    from vwindow.db import Database

    db = Database(config.db.url)
    await db.start()
    await db.stop()
    print("database schema is up to date")


async def _audit_verify(config: Config) -> int:
    from vwindow.audit import verify_chain
    from vwindow.db import Database

    db = Database(config.db.url)
    try:
        async with db.session() as s:
            report = await verify_chain(s)
    finally:
        await db.stop()
    if report.ok:
        print(f"audit chain intact: {report.rows} entries")
        return 0
    print(f"audit chain BROKEN at entry {report.first_bad_id}: {report.reason}")
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vwindow", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def server_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="TOML config file")
        p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
        p.add_argument("--port", type=int, help="port (default 8080)")
        p.add_argument("--db", help="database URL (sqlite+aiosqlite:///… or "
                       "postgresql+asyncpg://…)")
        p.add_argument("--data", help="data directory for the embedded database and files")

    demo = sub.add_parser("demo", help="server + demo data + simulated kiosk devices")
    server_opts(demo)
    demo.add_argument("--devices", default="sim", help="document camera driver (default sim)")
    serve = sub.add_parser("serve", help="run a server node")
    server_opts(serve)
    kiosk = sub.add_parser("kiosk", help="run the kiosk device agent")
    kiosk.add_argument("--config", help="TOML config file with a [kiosk] section")
    kiosk.add_argument("--server", help="server URL (default http://127.0.0.1:8080)")
    kiosk.add_argument("--kiosk", help="kiosk code")
    kiosk.add_argument("--key", help="kiosk device key")
    kiosk.add_argument("--spool", help="folder for captures waiting for the uplink")
    kiosk.add_argument("--devices", help="document camera driver: sim, uvc or none")
    kiosk.add_argument("--idcard", help="ID-card reader driver: sim, serial or none")
    kiosk.add_argument("--scanner", help="code scanner driver: sim, evdev, serial or none")
    kiosk.add_argument("--list-devices", action="store_true",
                       help="show the drivers and the device nodes found, then exit")
    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    server_opts(migrate)
    bk = sub.add_parser("backup", help="back up the database and the file store to a tar")
    bk.add_argument("out", help="archive to write (.tar, or .tar.gz to compress)")
    rs = sub.add_parser("restore", help="restore a backup (stop the nodes first)")
    rs.add_argument("source", help="archive written by 'vwindow backup'")
    rs.add_argument("--force", action="store_true",
                    help="replace a database and store that hold data")
    rs.add_argument("--check", action="store_true",
                    help="only verify the archive; change nothing")
    en = sub.add_parser("enrolment", help="kiosk enrolment codes")
    en_sub = en.add_subparsers(dest="enrolment_command", required=True)
    create = en_sub.add_parser("create", help="issue a one-time code for a kiosk PC")
    create.add_argument("kiosk", help="kiosk code")
    create.add_argument("--name", help="register a new kiosk with this name")
    create.add_argument("--township", help="the new kiosk's township")
    create.add_argument("--ttl-hours", type=float, default=24.0)
    pg = sub.add_parser(
        "purge", help="remove recordings, materials and ID-card reads past their retention "
        "([retention] in the config)",
        epilog=f"Exit status: 0 done; {PURGE_BUSY} another node is purging now, nothing done "
        "(PostgreSQL; try again later); 2 bad arguments or config; 1 any other error. The "
        "nodes purge by themselves every [retention] every_hours, counted from the last "
        "run, this command's included.")
    pg.add_argument("--dry-run", action="store_true",
                    help="count what would go; change nothing (takes no lock: it may run "
                    "beside a node's purge, whose removals its counts may then include)")
    for sp in (bk, rs, create, pg):
        server_opts(sp)
    audit = sub.add_parser("audit", help="audit log tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the audit hash chain")
    server_opts(verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        if args.command in ("demo", "serve"):
            config = _config(args)
            _setup_logging(args.verbose, config.server.log_format, config.server.node_id)
            asyncio.run(_serve(config, demo=args.command == "demo",
                               devices=args.devices if args.command == "demo" else None))
        elif args.command == "backup":
            return asyncio.run(_backup(_config(args), args.out))
        elif args.command == "restore":
            return asyncio.run(_restore(_config(args), args.source, force=args.force,
                                        check=args.check))
        elif args.command == "purge":
            return asyncio.run(_purge(_config(args), dry_run=args.dry_run))
        elif args.command == "enrolment":
            return asyncio.run(_enrolment(_config(args), args))
        elif args.command == "kiosk":
            asyncio.run(_kiosk(args))
        elif args.command == "migrate":
            asyncio.run(_migrate(_config(args)))
        elif args.command == "audit":
            return asyncio.run(_audit_verify(_config(args)))
    except VWindowError as err:
        print(f"vwindow: {err.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
