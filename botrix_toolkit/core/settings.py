"""Environment variables the toolkit reads, and where it keeps its files.

Every ``BOTRIX_*`` name is spelled here only; the CLI, the embedded server
and the dashboard read them through these constants.
"""

from __future__ import annotations

import os
from pathlib import Path

from botrix_toolkit.core.errors import InvalidInputError

#: The server URL used when none is given (else the embedded server).
URL_ENV = "BOTRIX_REDIS_URL"
#: Where the embedded server and simulation runs keep their files.
HOME_ENV = "BOTRIX_HOME"
#: The queue prefix(es) the dashboard shows, comma separated (set by `botrix dashboard`).
PREFIX_ENV = "BOTRIX_PREFIX"
#: The password the dashboard asks for; required to listen beyond loopback.
DASHBOARD_PASSWORD_ENV = "BOTRIX_DASHBOARD_PASSWORD"
#: "1" when `botrix dashboard` resolved the embedded server.
DASHBOARD_EMBEDDED_ENV = "BOTRIX_DASHBOARD_EMBEDDED"
#: The history folder `botrix monitor` writes, read by the dashboard's activity charts for past minutes.
HISTORY_DIR_ENV = "BOTRIX_HISTORY_DIR"


def dashboard_password() -> str | None:
    """``$BOTRIX_DASHBOARD_PASSWORD``; None when unset.

    Set but empty or only whitespace is refused (InvalidInputError): it is
    what an unset shell variable expands to, and a page guarded by it would
    let in anyone who presses Sign in.
    """
    password = os.environ.get(DASHBOARD_PASSWORD_ENV)
    if password is None:
        return None
    if not password.strip():
        raise InvalidInputError(
            f"{DASHBOARD_PASSWORD_ENV} is set but empty or only whitespace; set it to a "
            "password, or unset it to serve the page without one on 127.0.0.1 only")
    return password


def botrix_home() -> Path:
    """``$BOTRIX_HOME``, else ``$XDG_DATA_HOME/botrix``, else ``~/.local/share/botrix``.

    Never inside the installed package: everything the toolkit writes (the
    embedded server's data, simulation runs) goes here or where the user says.
    """
    if home := os.environ.get(HOME_ENV):
        return Path(home).expanduser()
    if xdg := os.environ.get("XDG_DATA_HOME"):
        return Path(xdg).expanduser() / "botrix"
    return Path.home() / ".local" / "share" / "botrix"


def runs_dir() -> Path:
    """Where `botrix simulate` saves a run by default: ``<botrix_home>/runs``."""
    return botrix_home() / "runs"


def bundled_data_dir() -> Path:
    """The ``data/`` folder shipped in the wheel (scenarios, alert rules, samples); read-only."""
    from importlib import resources

    return Path(str(resources.files("botrix_toolkit.data")))
