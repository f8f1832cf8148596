"""Passwords out of text: every PostgreSQL URI's password and every ``password=`` parameter hidden, so that
logs, errors, reports and ``/metrics`` can name a store safely."""

from __future__ import annotations

import re

__all__ = ["redact_dsn"]

_REDACTED = "***"
# scheme://user:PASSWORD@ (the user part holds no ':', '/', '@' or space; the password runs to the last '@'
# before the next space, so an unencoded '@', '/' or '?' inside it is hidden too: when unsure, hide more)
_USERINFO = re.compile(r"(?i)(\bpostgres(?:ql)?(?:\+\w+)?://[^:/@\s]*:)(\S*)(@)")
_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&;]+)")


def redact_dsn(text: str) -> str:
    """``text`` with the password of every PostgreSQL URI in it (``postgresql://user:PASSWORD@host``) and of
    every ``password=...`` parameter replaced by ``***``. Safe on any text: logs, error messages, reports."""
    text = str(text)
    text = _USERINFO.sub(lambda m: m.group(1) + _REDACTED + m.group(3), text)
    return _PASSWORD_PARAM.sub(lambda m: m.group(1) + _REDACTED, text)
