"""The customers a bench run acts as: accounts with live and test keys, and the bodies they send.

Keys are minted through the ledger service, as ops would (each key's hash, each opening grant).
FtmvAI admits at most a plan's ``concurrent`` unfinished orders per account (5 on ``paid``),
so its submits rotate over many accounts, and :func:`settle_unfinished` fails whatever a
submit phase left queued before the next one (there is no worker during those phases). FitInView
submits rotate over as many accounts, so live debits spread over as many balance rows as the
bare debit route's.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import asyncpg
import msgspec
from PIL import Image

from gateway.settings import Settings
from gateway.wiring import build_runtime
from ledger.keys import Dialect

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
PERSON = FIXTURES / "person-astronaut.png"
GARMENT = FIXTURES / "garment-shirt-red-stripes.png"
CREDITS = 1_000_000_000


class Customer(msgspec.Struct, frozen=True, kw_only=True):
    account_id: int
    live_key: str
    test_key: str


class World(msgspec.Struct, kw_only=True):
    fitinview: list[Customer]
    ftmvai: list[Customer]


async def make_world(settings: Settings, *, accounts: int) -> World:
    """``accounts`` paid accounts per dialect, each with a live and a test key."""
    runtime = build_runtime(settings)
    await runtime.start(listen_for_completions=False)
    world = World(fitinview=[], ftmvai=[])
    try:
        pairs: tuple[tuple[Dialect, list[Customer]], ...] = (
            ("fitinview", world.fitinview),
            ("ftmvai", world.ftmvai),
        )
        for dialect, customers in pairs:
            async with runtime.db.transaction():
                for number in range(accounts):
                    account = await runtime.ledger.open_account(
                        name=f"Bench {dialect} {number}", dialect=dialect, plan="paid", credits=CREDITS
                    )
                    live = await runtime.ledger.mint_key(account.id, mode="live", name="bench live")
                    test = await runtime.ledger.mint_key(account.id, mode="test", name="bench test")
                    customers.append(
                        Customer(account_id=account.id, live_key=live.plaintext, test_key=test.plaintext)
                    )
    finally:
        await runtime.close()
    return world


def _encoded(path: Path, side: int, fmt: str) -> str:
    image = Image.open(path).convert("RGB")
    image.thumbnail((side, side))
    out = io.BytesIO()
    image.save(out, format=fmt, quality=85)
    return base64.b64encode(out.getvalue()).decode()


def submit_bodies() -> dict[str, str]:
    """One async submit body per dialect: a 256 px person and garment, base64 (no outbound fetch)."""
    person, garment = _encoded(PERSON, 256, "JPEG"), _encoded(GARMENT, 256, "JPEG")
    fitinview = {"person_image_b64": person, "garment_images_b64": [garment], "wait": False}
    ftmvai = {"person_image": person, "clothing_image": garment, "options": {"quality": "standard"}}
    return {
        "fitinview": msgspec.json.encode(fitinview).decode(),
        "ftmvai": msgspec.json.encode(ftmvai).decode(),
    }


async def settle_unfinished(database_url: str) -> int:
    """Fail every job still queued or running (a submit phase's leftovers): frees FtmvAI's slots."""
    connection = await asyncpg.connect(database_url)
    try:
        status = await connection.execute(
            """UPDATE jobs SET status = 'failed', error_code = 'internal_error', error_message = 'bench',
                               completed_at = now()
               WHERE status IN ('queued', 'running')"""
        )
    finally:
        await connection.close()
    return int(status.split()[-1])
