"""Credentials never reach output, logs or image labels."""

from __future__ import annotations

import re

# scheme://user:password@ or scheme://token@
_URL_USERINFO_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")
# user:password@host, as scp-like git remotes and registry strings may be written
_BARE_USERINFO_RE = re.compile(r"(?<![\w/:@.*-])[^\s/@:]+:[^\s/@]+@(?=[A-Za-z0-9\[])")


def redact(text: str) -> str:
    """`https://user:token@host` -> `https://***@host`; `user:pw@host:path` -> `***@host:path`."""
    return _BARE_USERINFO_RE.sub("***@", _URL_USERINFO_RE.sub(r"\g<scheme>***@", text))
