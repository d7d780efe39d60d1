"""What is never shown: secret fields of a job, passwords in URLs.

The stored job keeps every value (the Go service reads it); frames, reprs,
logs, charts and the dashboard show ``REDACTED`` in their place.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

REDACTED = "***"
#: Job fields whose values are never shown (compared case-insensitively at any depth).
SECRET_FIELDS = frozenset({"password"})


def redact(value: Any) -> Any:
    """Replace, in place and at any depth, the value of every ``password`` key by ``"***"``.

    Keys are compared case-insensitively, as Go's JSON decoder matches field
    names. Returns ``value`` itself.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and key.lower() in SECRET_FIELDS:
                value[key] = REDACTED
            else:
                redact(item)
    elif isinstance(value, list):
        for item in value:
            redact(item)
    return value


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for display and logs.

    Handles ``redis://user:secret@host``, ``redis://:secret@host`` and a
    ``password=`` query parameter (``unix:///tmp/r.sock?password=secret``).
    Text that is not a URL is returned unchanged.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(name.lower() == "password" for name, _ in pairs):
        redacted = [(n, "***" if n.lower() == "password" else v) for n, v in pairs]
        query = urlencode(redacted, safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url
    # rebuilt by hand: urlunsplit would turn "unix:///path" into "unix:/path"
    rebuilt = f"{parts.scheme}:" if parts.scheme else ""
    rebuilt += f"//{netloc}{parts.path}"
    if query:
        rebuilt += f"?{query}"
    if parts.fragment:
        rebuilt += f"#{parts.fragment}"
    return rebuilt
