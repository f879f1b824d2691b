"""The two public API documents, for the tests that run their examples verbatim.

They live in ``../shared/contracts/`` beside the repository on the project's own machines
only. A stranger's clone has no such folder: those tests skip there, saying why. Under
``CI=true`` the documents must be present, so CI can never skip them silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CONTRACTS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "contracts"


def contract_text(name: str) -> str:
    path = CONTRACTS_DIR / name
    if path.exists():
        return path.read_text()
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{path} is missing, and CI must run the document's examples", pytrace=False)
    pytest.skip(f"{path} is absent: the API documents sit beside the repository on its own machines only")
