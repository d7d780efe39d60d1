"""Server URLs: check_server_url refuses what cannot be used, redact_url hides every password.

The refusal is shown for every command that takes a URL, run as a real
subprocess: one line, the password replaced, no traceback. The property
tests build URLs around a random password, well formed or mangled the ways
people mistype them, and look for the password in what is shown.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from botrix_toolkit import InvalidInputError, QueueService
from botrix_toolkit.core.redaction import redact_url
from botrix_toolkit.core.server_url import check_server_url
from botrix_toolkit.server.connect import resolve_url

PASSWORD = "pw123-Secret"
ODD_URLS = [
    f"redis//:{PASSWORD}@127.0.0.1:16402",          # the colon after the scheme missing
    f"redis://:{PASSWORD}@[::1:16402/0",            # an IPv6 bracket never closed
    f"redis:/:{PASSWORD}@127.0.0.1:16402/0",        # one slash
    f"redis://:{PASSWORD}@127.0.0.1:16402x/0",      # a port that is not a number
    f"redis://:{PASSWORD}@127.0.0.1:99999/0",       # a port out of range
    f"http://:{PASSWORD}@127.0.0.1:16402/0",        # another scheme
    f"redis://:{PASSWORD}@/0",                      # no host
    f"redis://:{PASSWORD}@127.0.0.1:16402/zero",    # a path that is not a database
    f"redis://:{PASSWORD}@127.0.0.1 :16402/0",      # a space
    f" redis://:{PASSWORD}@127.0.0.1:16402/0",      # leading whitespace
    f"REDIS://:{PASSWORD}@127.0.0.1:16402/0",       # an upper-case scheme redis-py refuses
]


@pytest.mark.parametrize("url", ODD_URLS)
def test_an_unusable_url_is_refused_naming_the_problem_never_the_password(url: str) -> None:
    for attempt in (lambda: check_server_url(url), lambda: resolve_url(url),
                    lambda: QueueService.from_url(url)):
        with pytest.raises(InvalidInputError, match="is not usable: ") as error:
            attempt()
        text = str(error.value)
        assert PASSWORD not in text and "***" in text and "\n" not in text


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379/0", "redis://user:pw@host", "rediss://u:p@ss@h:6380/2?ssl_cert_reqs=none",
    "redis://[::1]:6379/1", "unix:///tmp/redis.sock?db=1&password=x", "redis://localhost",
])
def test_a_usable_url_is_returned_unchanged(url: str) -> None:
    assert check_server_url(url) == url


def test_the_environment_url_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTRIX_REDIS_URL", ODD_URLS[0])
    with pytest.raises(InvalidInputError) as error:
        resolve_url(None)
    assert PASSWORD not in str(error.value)


COMMANDS = [
    ["dashboard", "--port", "8599"],
    ["simulate", "steady", "--quiet"],
    ["worker", "json:dumps"],
    ["bench"],
    ["monitor", "--history", "history"],
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("url", ODD_URLS[:2], ids=["missing-colon", "open-bracket"])
def test_every_command_refuses_an_odd_url_in_one_line(command: list[str], url: str,
                                                       tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BOTRIX_REDIS_URL"}
    env["BOTRIX_HOME"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-m", "botrix_toolkit.cli", *command, "--redis-url", url],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and "is not usable" in done.stderr, done.stderr
    assert PASSWORD not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


# -- redact_url: no password survives -------------------------------------------------------------

_HOSTS = st.sampled_from(["127.0.0.1", "host", "[::1]", "[::1", "redis.example.com", ""])
_PORTS = st.sampled_from(["", ":6379", ":16402", ":99999", ":port", ":"])
_TAILS = st.sampled_from(["", "/0", "/1?ssl_cert_reqs=none", "?db=2", "/0#frag", "/"])
_SCHEMES = st.sampled_from(["redis://", "rediss://", "unix://", "redis//", "redis:/", "redis:",
                            "", "//", "REDIS://", "http://"])
_USERS = st.sampled_from(["", "user", "botrix-app", "a:b"])


@given(scheme=_SCHEMES, user=_USERS, password=st.text(min_size=1, max_size=40),
       host=_HOSTS, port=_PORTS, tail=_TAILS)
@example(scheme="redis//", user="", password="pw123", host="127.0.0.1", port=":16402", tail="")
@example(scheme="redis://", user="", password="pw123", host="[::1", port=":16402", tail="/0")
@example(scheme="redis://", user="", password="p@ss/w?rd#x", host="h", port="", tail="/0")
def test_redact_url_never_shows_the_password_of_userinfo(
    scheme: str, user: str, password: str, host: str, port: str, tail: str
) -> None:
    url = f"{scheme}{user}:{password}@{host}{port}{tail}"
    # only a password that is not spelled elsewhere in the URL can be looked for
    assume(password not in url.replace(f":{password}@", ":@", 1))
    assume(password not in "***")
    shown = redact_url(url)
    assert password not in shown
    assert shown.count("***") >= 1


@given(before=st.sampled_from(["unix:///tmp/r.sock?", "redis://h:1/0?db=1&", "redis://h?"]),
       name=st.sampled_from(["password", "PASSWORD", "Password"]),
       password=st.text(alphabet=st.characters(blacklist_characters="&"), min_size=1, max_size=40),
       after=st.sampled_from(["", "&db=1", "&ssl_cert_reqs=none"]))
def test_redact_url_never_shows_a_password_query_parameter(
    before: str, name: str, password: str, after: str
) -> None:
    url = f"{before}{name}={password}{after}"
    assume(password not in url.replace(f"={password}", "=", 1))
    assume(password not in "***")
    assert password not in redact_url(url)


@given(st.text(alphabet=st.characters(blacklist_characters="@"), max_size=60))
def test_redact_url_leaves_text_without_a_password_unchanged(text: str) -> None:
    assume("password=" not in text.lower())
    assert redact_url(text) == text
