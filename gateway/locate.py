"""Where the CLI's database, Redis and S3 are: production settings, or a ``dev`` deployment's state.

``tryon-gateway admin …`` and ``tryon-gateway ledger verify`` run beside ``serve`` (from
``TRYON_*``) or beside ``dev`` (from its data directory's state file, so nobody copies ports
around). With ``--data-dir DIR``, or when ``TRYON_DATABASE_URL`` is unset and ``./.tryon``
holds a dev deployment, the dev state wins. A stopped dev deployment's services are started
for the command and stopped again after it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

from gateway.settings import Settings

DEFAULT_DATA_DIR = ".tryon"


class NotReachable(Exception):
    """One line saying what was tried and what to set; the CLI prints it and exits 2, no traceback."""


def dev_data_dir(explicit: str | None) -> Path | None:
    """The dev deployment to use, if any: ``--data-dir``, else ``./.tryon`` when no URL is set."""
    if explicit:
        path = Path(explicit).expanduser().resolve()
        if not (path / "services.json").exists():
            raise NotReachable(
                f"{path} holds no dev deployment (no services.json); run"
                f" `tryon-gateway dev --data-dir {path}` first, or set TRYON_DATABASE_URL,"
                " TRYON_REDIS_URL and TRYON_S3_* for a production one"
            )
        return path
    if os.environ.get("TRYON_DATABASE_URL"):
        return None
    default = Path(os.environ.get("TRYON_DATA_DIR", DEFAULT_DATA_DIR)).resolve()
    return default if (default / "services.json").exists() else None


@contextlib.contextmanager
def cli_settings(data_dir: str | None) -> Iterator[Settings]:
    """Settings for a CLI command; starts (then stops) a stopped dev deployment's services."""
    # Piccolo warns on stderr when it can't connect; the command says that itself, in one line.
    warnings.filterwarnings("ignore", module="piccolo")
    try:
        base = Settings.from_env()
    except ValueError as exc:
        raise NotReachable(str(exc)) from None
    path = dev_data_dir(data_dir)
    if path is None:
        yield base
        return
    from gateway.embedded import EmbeddedServices

    services = EmbeddedServices(path)
    started_here = not services.running()
    if started_here:
        print(f"starting the stopped dev deployment's services under {path} …", file=sys.stderr, flush=True)
    try:
        endpoints = services.start()
    except Exception as exc:
        raise NotReachable(f"could not start the dev deployment's services under {path}: {exc}") from None
    try:
        yield base.replace(
            database_url=endpoints.database_url,
            redis_url=endpoints.redis_url,
            s3_endpoint=endpoints.s3_endpoint,
            s3_access_key=endpoints.s3_access_key,
            s3_secret_key=endpoints.s3_secret_key,
            s3_region=endpoints.s3_region,
        )
    finally:
        if started_here:
            services.stop()


def redacted(url: str) -> str:
    """A service URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}@{host}"
