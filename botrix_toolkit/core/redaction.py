"""What is never shown: secret fields of a job, passwords in URLs.

The stored job keeps every value (the Go service reads it); frames, reprs,
logs, charts and the dashboard show ``REDACTED`` in their place.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from botrix_toolkit.core.json_depth import nests_too_deep

REDACTED = "***"
#: What makes a key secret: a key whose name, lowercased and with ``_``, ``-``,
#: ``.`` and spaces taken out, contains one of these words (``password``,
#: ``db_password``, ``Password``, ``api_key``, ``apiKey``, ``X-Api-Key``,
#: ``access_token``, ``client_secret``, ``private_key``, ``Authorization``...).
#: Matched at any depth of a job, a result or an event, inside lists too.
SECRET_FIELDS = frozenset({
    "password", "passwd", "secret", "token", "apikey", "privatekey", "authorization", "credential",
})
_SEPARATORS = "_-. "
_SEPARATOR_TABLE = str.maketrans("", "", _SEPARATORS)
# A password given as a URL's query parameter: its value runs to the next "&" (or the end).
_QUERY_PASSWORD = re.compile(r"([?&;]password=)[^&]*", re.IGNORECASE)


@lru_cache(maxsize=4096)
def _normalised_words(words: frozenset[str]) -> tuple[str, ...]:
    return tuple(sorted({word.lower().translate(_SEPARATOR_TABLE) for word in words}))


# Keys repeat (every job has the same dozen): each is judged once.
@lru_cache(maxsize=8192)
def is_secret_key(key: str, secrets: frozenset[str] = SECRET_FIELDS) -> bool:
    """True when ``key`` names a secret under the matching rule of ``SECRET_FIELDS``."""
    name = key.lower().translate(_SEPARATOR_TABLE)
    return any(word in name for word in _normalised_words(secrets))


def _hidden(value: Any) -> Any:
    # An unset secret ("" or null) stays as it is: saying it is not set reveals nothing.
    return value if value is None or value == "" else REDACTED


def redact(value: Any, secrets: frozenset[str] = SECRET_FIELDS) -> Any:
    """Replace, in place and at any depth, the value of every secret key by ``"***"``.

    ``value`` is a parsed JSON value (dicts, lists, scalars); keys are matched
    by ``is_secret_key`` (case-insensitively, as Go's decoder matches field
    names). Returns ``value`` itself.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and is_secret_key(key, secrets):
                value[key] = _hidden(item)
            elif isinstance(item, (dict, list)):
                redact(item, secrets)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)):
                redact(item, secrets)
    return value


def redacted(value: Any, secrets: frozenset[str] = SECRET_FIELDS) -> Any:
    """A copy of ``value`` with every secret hidden as ``redact`` hides it; ``value`` is untouched.

    Parts that hold no secret are shared with ``value``, not copied.
    """
    if isinstance(value, dict):
        out: dict[Any, Any] | None = None
        for key, item in value.items():
            if isinstance(key, str) and is_secret_key(key, secrets):
                hidden = _hidden(item)
            elif isinstance(item, (dict, list)):
                hidden = redacted(item, secrets)
            else:
                continue
            if hidden is not item:
                out = dict(value) if out is None else out
                out[key] = hidden
        return value if out is None else out
    if isinstance(value, list):
        items = [redacted(item, secrets) if isinstance(item, (dict, list)) else item for item in value]
        return value if all(a is b for a, b in zip(items, value)) else items
    return value


def secret_values(value: Any, secrets: frozenset[str] = SECRET_FIELDS) -> set[str]:
    """Every non-empty text held under a secret key of ``value``, at any depth.

    For blanking secrets that reached free text, such as an exception a handler raised.
    """
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and is_secret_key(key, secrets):
                if isinstance(item, str) and item:
                    found.add(item)
                elif isinstance(item, (dict, list)):
                    found |= {text for text in _texts(item) if text}
            elif isinstance(item, (dict, list)):
                found |= secret_values(item, secrets)
    elif isinstance(value, list):
        for item in value:
            found |= secret_values(item, secrets)
    return found


def _texts(value: Any) -> list[str]:
    """Every string inside a parsed JSON value (a secret key's whole value is secret)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _texts(item)]
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    return []


def may_hold_secret(raw: bytes, secrets: frozenset[str] = SECRET_FIELDS) -> bool:
    """False only when the JSON text ``raw`` cannot hold a secret key: a cheap pre-check.

    Only a value that passes it pays for a walk with ``redact``. A key spelled
    with JSON escapes (``pass\\u0077ord``) always passes.
    """
    if b"\\u" in raw:
        return True
    text = raw.lower()
    if secrets is SECRET_FIELDS:
        # a part of every spelling of each word ("api" of api_key, api-key, apikey)
        return (b"pass" in text or b"secret" in text or b"token" in text or b"api" in text
                or b"private" in text or b"authori" in text or b"credential" in text)
    text = text.translate(None, _SEPARATORS.encode())
    return any(word.encode() in text for word in _normalised_words(secrets))


def redact_text(text: str, secrets: frozenset[str] = SECRET_FIELDS) -> str:
    """Best effort for text that may be JSON, or not (a malformed message).

    JSON text comes back as JSON with its secrets hidden; other text is cut
    before the first secret word, so nothing that follows one is shown.
    """
    words = _normalised_words(secrets)
    lowered = text.lower()
    squeezed = lowered.translate(_SEPARATOR_TABLE)
    if "\\u" not in text and not any(word in squeezed for word in words):
        return text
    if not nests_too_deep(text):
        try:
            return json.dumps(redact(json.loads(text), secrets), ensure_ascii=False)
        except (ValueError, RecursionError):
            pass
    # Not JSON: keep only what comes before the first secret word (or escape).
    cut = min([i for i in (_first_secret_at(lowered, words), text.find("\\u")) if i >= 0])
    return text[:cut] + REDACTED


def _first_secret_at(lowered: str, words: tuple[str, ...]) -> int:
    """Where the first secret word starts in ``lowered`` (separators allowed inside), or -1."""
    starts = [m.start() for word in words
              if (m := re.search(_SEPARATORS_RE.join(map(re.escape, word)), lowered))]
    return min(starts, default=-1)


_SEPARATORS_RE = "[" + re.escape(_SEPARATORS) + "]*"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for display, logs and errors.

    Handles ``redis://user:secret@host``, ``redis://:secret@host`` and a
    ``password=`` query parameter (``unix:///tmp/r.sock?password=secret``),
    and never trusts the URL to parse: the userinfo is whatever stands
    between the first ``//`` (else the start) and the last ``@``, so a
    missing colon (``redis//:pw@host``), an unclosed bracket or a password
    holding ``@``, ``/`` or ``?`` is hidden too. Text without a password is
    returned unchanged; anything after the first ``:`` of the userinfo is
    replaced, even if that hides a port of an odd URL.
    """
    text = _QUERY_PASSWORD.sub(rf"\g<1>{REDACTED}", url)
    at = text.rfind("@")
    if at < 0:
        return text
    slashes = text.find("//", 0, at)
    start = slashes + 2 if slashes >= 0 else 0
    user, colon, _ = text[start:at].partition(":")
    if not colon:
        return text  # a user name alone is not a secret
    return f"{text[:start]}{user}:{REDACTED}{text[at:]}"
