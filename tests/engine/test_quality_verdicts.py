"""The quality gate remembers its verdict on a result checked without a person (the stock backend's
bytes, identical per size and format), and only for exactly that question: the same bytes asked
about another size, or with the content check, are checked again, and a failure stays a failure."""

from __future__ import annotations

import io

from PIL import Image

from engine.backends.stock import stock_result
from engine.quality import QualityThresholds, check_result_async

THRESHOLDS = QualityThresholds()


def _flat_png(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), (128, 128, 128)).save(out, format="PNG")
    return out.getvalue()


async def test_a_remembered_pass_is_only_for_the_size_it_was_checked_at() -> None:
    stock = stock_result(1024, "png").data
    for _ in range(2):
        verdict = await check_result_async(stock, longest_side=1024, person=None, thresholds=THRESHOLDS)
        assert verdict.ok, verdict
    wrong = await check_result_async(stock, longest_side=2048, person=None, thresholds=THRESHOLDS)
    assert not wrong.ok and wrong.reason is not None and wrong.reason.startswith("wrong size"), wrong


async def test_a_remembered_verdict_keeps_the_content_check_apart_and_failures_fail() -> None:
    flat = _flat_png(512)
    plain = await check_result_async(flat, longest_side=512, person=None, thresholds=THRESHOLDS)
    assert plain.ok, plain  # decoding and size only
    for _ in range(2):
        verdict = await check_result_async(
            flat, longest_side=512, person=None, thresholds=THRESHOLDS, content=True
        )
        assert (verdict.ok, verdict.reason) == (False, "blank or flat image"), verdict


async def test_other_bytes_are_checked_in_full() -> None:
    for _ in range(2):
        verdict = await check_result_async(
            b"not an image", longest_side=512, person=None, thresholds=THRESHOLDS
        )
        assert (verdict.ok, verdict.reason) == (False, "undecodable"), verdict
