"""A pytest plugin: no log record of the whole test session may hold a key, token or secret.

Loaded for every run (``pytest_plugins`` in ``tests/conftest.py``). It keeps a
handler on the root logger (at INFO, the level ``serve`` and ``worker`` log at) for the whole
session and checks each record as the JSON formatter would write it, *before* the formatter's
last-resort masking, for anything shaped like a whole FitInView key, webhook secret, admin or
operator token, bearer credential, Stripe secret key, or presigned link signature. A match fails
the run and names the line. (FtmvAI keys are 64 hex digits, indistinguishable from the SHA-256
digests some lines carry; the tests in ``tests/gateway/test_logging.py`` look for the exact keys
they minted instead.)

Child processes (``serve``, ``worker``, ``dev``) write their own logs; the tests that start
them check those lines themselves.
"""

from __future__ import annotations

import json
import logging
import re

import pytest

SECRET = re.compile(
    r"fiv_(?:live|test)_[A-Za-z0-9]{16,}"  # a whole FitInView key (its hint keeps 3 characters)
    r"|whsec_[A-Za-z0-9_\-]{16,}"  # a webhook signing secret
    r"|\badm_[A-Za-z0-9_\-]{12,}"  # an admin token
    r"|\bopr_[A-Za-z0-9_\-]{12,}"  # an operator token
    r"|(?i:bearer)\s+[A-Za-z0-9_\-.]{12,}"  # an Authorization header's credential
    r"|\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"  # a Stripe secret or restricted key
    r"|(?i:x-amz-signature)(?:=|%3D|\"?:\s*\"?)[0-9a-f]{16,}"  # a presigned link's signature
    r"|(?i:x-amz-credential)=[^&\s\"]{8,}"  # ... and the access key it was signed with
)


TEST_CLIENT_LOGGERS = ("httpx", "httpcore")
"""Loggers of HTTP clients only the tests use (the gateway's own clients are aiohttp and urllib3)."""


class _Audit(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        from gateway.logging_setup import record_fields

        if record.name.startswith(TEST_CLIENT_LOGGERS):
            return  # the tests' own HTTP clients logging the links they were handed, not the gateway
        try:
            line = json.dumps(record_fields(record), default=str)
        except Exception:  # a record that cannot even be rendered is not ours to judge
            return
        if SECRET.search(line) and len(self.leaks) < 20:
            self.leaks.append(line[:500])


_audit = _Audit()
_previous_level: int | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _previous_level
    root = logging.getLogger()
    _previous_level = root.level
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    root.addHandler(_audit)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    root = logging.getLogger()
    root.removeHandler(_audit)
    if _previous_level is not None:
        root.setLevel(_previous_level)
    if _audit.leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _audit.leaks:
        terminalreporter.section("log lines holding a key, token or secret", red=True)
        for line in _audit.leaks:
            terminalreporter.line(line)
