"""``vwindow purge`` as cron runs it: a real process over real SQLite and PostgreSQL. It
purges and records the run; ``--dry-run`` counts and writes nothing; while a node is
purging (PostgreSQL) it does nothing and exits with its own status."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.integration.test_retention import Site
from tests.integration.test_retention_job import expired_case, purge_entries
from vwindow.cli import PURGE_BUSY, main
from vwindow.models import utcnow
from vwindow.retention import PG_PURGE_LOCK, last_run

both_databases = pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
postgres_only = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
ROOT = Path(__file__).resolve().parents[2]


class Cli:
    """``vwindow purge`` with the options of one installation."""

    def __init__(self, options: list[str]) -> None:
        self.options = options

    async def purge(self, *flags: str) -> tuple[int, str, str]:
        """``vwindow purge`` in a process of its own: (exit status, stdout, stderr)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vwindow.cli", "purge", *flags, *self.options,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            cwd=ROOT)  # the checkout's vwindow, installed or not
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def purge_cli(db_url: str, tmp_path: Path) -> Cli:
    config = tmp_path / "vwindow.toml"
    config.write_text("[retention]\nmaterials_days = 365\nevery_hours = 0\n",
                      encoding="utf-8")
    # --data puts the store where ``site`` has it: tmp_path / "files".
    return Cli(["--config", str(config), "--db", db_url, "--data", str(tmp_path)])


@both_databases
async def test_purge_records_the_run_and_a_dry_run_writes_nothing(site: Site,
                                                                  purge_cli: Cli) -> None:
    case, (data,) = await expired_case(site, "cli")
    status, out, _err = await purge_cli.purge("--dry-run")
    assert status == 0
    assert out.startswith("retention: would remove 1 materials (0 recordings) and 0 ID-card "
                          "reads of 1 cases; 1 files,")
    assert site.has_file(data)
    assert await last_run(site.db) is None and await purge_entries(site.db) == []

    before = utcnow()
    status, out, _err = await purge_cli.purge()
    assert status == 0
    assert out.startswith("retention: removed 1 materials (0 recordings) and 0 ID-card "
                          "reads of 1 cases; 1 files,")
    assert not site.has_file(data)
    assert await purge_entries(site.db) == [(case, "system:retention")]
    # The nodes count their next run from this one.
    ran = await last_run(site.db)
    assert ran is not None and ran >= before


@postgres_only
async def test_purge_while_a_node_purges_does_nothing(site: Site, purge_cli: Cli) -> None:
    case, (data,) = await expired_case(site, "busy")
    async with site.db.engine.connect() as node:
        node = await node.execution_options(isolation_level="AUTOCOMMIT")
        assert await node.scalar(text("SELECT pg_try_advisory_lock(:k)"),
                                 {"k": PG_PURGE_LOCK})
        status, out, err = await purge_cli.purge()
        assert (status, out) == (PURGE_BUSY, "")
        assert "vwindow purge: another node is purging now; nothing done" in err
        assert site.has_file(data)
        assert await last_run(site.db) is None and await purge_entries(site.db) == []
        # A dry run takes no lock: it counts while the node works.
        status, out, _err = await purge_cli.purge("--dry-run")
        assert status == 0 and out.startswith("retention: would remove 1 materials")
        await node.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_PURGE_LOCK})
    status, out, _err = await purge_cli.purge()
    assert status == 0 and out.startswith("retention: removed 1 materials")
    assert not site.has_file(data)
    assert await purge_entries(site.db) == [(case, "system:retention")]


def test_help_names_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["purge", "--help"])
    assert done.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"{PURGE_BUSY} another node is purging now, nothing done" in help_text
    assert "--dry-run count what would go; change nothing (takes no lock" in help_text
