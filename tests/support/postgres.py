"""A throwaway PostgreSQL server from Debian's `postgresql` package, on 127.0.0.1.

`.ci/run` installs the package; where it is missing the tests that need it skip, unless
$AUTOINTERP_REQUIRE_STACK is set (CI), where they fail. Postgres refuses to run as root, so
as root the cluster belongs to the `postgres` user the package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .transformers_server import free_port


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def temporary_postgres(db: str = "dagster") -> Iterator[str]:
    """Start a cluster in a temp dir; yield a SQLAlchemy URL of database `db`; stop and delete it."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise FileNotFoundError("Debian's postgresql is not installed: apt-get install -y postgresql")
    root = Path(tempfile.mkdtemp(prefix="autointerp-pg-", dir="/tmp"))
    root.chmod(0o755)
    data, port = root / "data", free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")

    def run(*cmd: str) -> None:
        subprocess.run(_as_owner(list(cmd)), check=True, capture_output=True, text=True, cwd=root)

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "start",
            "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off")
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", db)
        # psycopg2 named: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which dagster-postgres lacks
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{db}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                           capture_output=True, cwd=root)
        shutil.rmtree(root, ignore_errors=True)
