"""``docs/configuration.md`` documents every ``TRYON_*`` setting, with its real default."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from gateway.settings import ENV_PREFIX, Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
ROW = re.compile(r"^\|\s*`(TRYON_[A-Z0-9_]+)`\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|\s*$")


def _rows() -> dict[str, tuple[str, str, str]]:
    rows: dict[str, tuple[str, str, str]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            variable, kind, default, meaning = match.groups()
            assert variable not in rows, f"{variable} is documented twice"
            rows[variable] = (kind, default, meaning)
    return rows


def _documented_default(value: object) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple):
        value = ",".join(value)
    if value == "":
        return "*(empty)*"
    return f"`{value}`"


def test_every_setting_has_a_row() -> None:
    rows = _rows()
    missing = [variable for variable in Settings.documented_variables() if variable not in rows]
    assert not missing, f"docs/configuration.md does not document {missing}"


@pytest.mark.parametrize("field", msgspec.structs.fields(Settings), ids=lambda field: field.name)
def test_documented_default_and_type_match(field: msgspec.structs.FieldInfo) -> None:
    variable = ENV_PREFIX + field.name.upper()
    rows = _rows()
    if variable not in rows:
        pytest.fail(f"docs/configuration.md does not document {variable}")
    kind, default, meaning = rows[variable]
    assert default == _documented_default(field.default), f"{variable}: documented default differs"
    expected_kind = "list" if isinstance(field.default, tuple) else type(field.default).__name__
    assert kind == expected_kind, f"{variable}: documented type differs"
    assert meaning.strip(), f"{variable} has no meaning"
