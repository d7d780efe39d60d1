"""The one check of a server URL, before anything connects or prints it.

A URL the toolkit cannot use (a missing colon, an unclosed IPv6 bracket, a
port that is not a number, an unknown scheme) is refused here with
``InvalidInputError``, in one line that shows the URL with its password
replaced: every command, the dashboard and ``QueueService.from_url`` call
this, so no caller prints a raw URL or a parser's traceback.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from botrix_toolkit.core.errors import InvalidInputError
from botrix_toolkit.core.redaction import redact_url

SCHEMES = ("redis", "rediss", "unix")
_EXAMPLE = "redis://[user:password@]host[:port][/db], rediss://... or unix:///path/to/socket"


def check_server_url(url: str) -> str:
    """``url`` unchanged when redis-py can connect with it; else InvalidInputError.

    The message names what is wrong and shows the URL through ``redact_url``.
    """
    if not isinstance(url, str):
        raise InvalidInputError(f"server URL must be text; got {type(url).__name__}")
    problem = _problem(url)
    if problem:
        raise InvalidInputError(
            f"server URL {redact_url(url)!r} is not usable: {problem} (expected {_EXAMPLE})")
    return url


def _problem(url: str) -> str | None:
    """What is wrong with ``url``, in words that never quote its password."""
    if not url.strip():
        return "it is empty"
    if url != url.strip() or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "it contains spaces or control characters"
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        return "it must start with redis://, rediss:// or unix://"
    if scheme not in SCHEMES:
        return "the scheme must be in lower case"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as exc:
        return _urllib_reason(exc)
    if scheme == "unix":
        return None if parts.path else "a unix:// URL needs the socket's path"
    if "@" in parts.path or "@" in parts.query:
        # e.g. a password with a "/" in it: urllib would take the rest for a host
        return "a password with '/', '?' or '#' must be percent-encoded"
    if not parts.hostname:
        return "it names no host"
    if port == 0:
        return "port 0 is not a port a server listens on"
    db = parts.path.strip("/")
    if db and not db.isdigit():
        return "the path must be a database number (/0, /1, ...)"
    return None


def _urllib_reason(error: ValueError) -> str:
    """urllib's reason without the text it quotes (the netloc may hold the password)."""
    text = str(error)
    if "IPv6" in text:
        return "an IPv6 address must be closed by ']'"
    if "Port" in text or "port" in text:
        return "the port must be a number from 1 to 65535"
    return "it cannot be parsed as a URL"
