"""The password gate: when BOTRIX_DASHBOARD_PASSWORD is set, nothing works until it is given.

Failed sign-ins are slowed down by one throttle for the whole process
(signin_throttle.py), per client address and overall, and each is logged
with its time and the client's address.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import math

import streamlit as st
from botrix_toolkit.dashboard.signin_throttle import SignInThrottle

logger = logging.getLogger(__name__)

_SIGNED_IN = "botrix_signed_in"
# Shared by every session of this dashboard process (a module is imported once).
THROTTLE = SignInThrottle()
# What st.context gives for a browser on this machine.
LOCAL_CLIENT = "127.0.0.1 (local)"


def password_matches(given: str, expected: str) -> bool:
    """Constant-time comparison, so response times do not leak the password."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def client_address() -> str:
    """The address of this session's browser, as Streamlit saw the websocket.

    Streamlit gives None for loopback. A proxy's X-Forwarded-For is logged
    beside it but never used to tell clients apart: anyone can send it.
    """
    try:
        address = st.context.ip_address
        forwarded = st.context.headers.get("X-Forwarded-For")
    except Exception:  # no request context (a script run outside a server)
        return LOCAL_CLIENT
    # Text only: a test harness without a browser gives stand-in objects.
    address = address if isinstance(address, str) and address else LOCAL_CLIENT
    if isinstance(forwarded, str) and forwarded:
        return f"{address} (forwarded for {forwarded[:100]!r})"
    return address


def _throttle_key(client: str) -> str:
    return client.partition(" (forwarded")[0]


def require_password(expected: str | None) -> bool:
    """True when the page may show; otherwise draws the sign-in form and returns False.

    With no password configured (the default, bound to 127.0.0.1) the page is open.
    """
    if not expected or st.session_state.get(_SIGNED_IN):
        return True
    st.title("botrix queue")
    with st.form("sign_in"):
        given = st.text_input("Dashboard password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in")
    if not submitted:
        return False
    # the typed password must not stay in the session's widget state
    st.session_state.pop("sign_in_password", None)
    client = client_address()
    key = _throttle_key(client)
    wait = THROTTLE.wait_s(key)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if wait > 0:
        # Not checked at all: the right password now would make the delay pointless.
        logger.warning("dashboard sign-in refused at %s from %s: too many failures, %.0f s to wait",
                       now, client, wait)
        st.error(f"Too many failed sign-ins. Try again in {math.ceil(wait)} s.")
        return False
    if password_matches(given, expected):
        THROTTLE.record_success(key)
        st.session_state[_SIGNED_IN] = True
        logger.info("dashboard sign-in at %s from %s", now, client)
        st.rerun()
    verdict = THROTTLE.record_failure(key)
    logger.warning("dashboard sign-in failed at %s from %s: %d failures from there, %d recently "
                   "in all; next try in %.0f s", now, client, verdict.client_failures,
                   verdict.overall_failures, verdict.wait_s)
    if verdict.wait_s > 0:
        st.error(f"Wrong password. Try again in {math.ceil(verdict.wait_s)} s.")
    else:
        st.error("Wrong password.")
    return False
