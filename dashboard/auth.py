"""The password gate: when BOTRIX_DASHBOARD_PASSWORD is set, nothing works until it is given."""

from __future__ import annotations

import hmac
import logging

import streamlit as st

logger = logging.getLogger(__name__)

_SIGNED_IN = "botrix_signed_in"


def password_matches(given: str, expected: str) -> bool:
    """Constant-time comparison, so response times do not leak the password."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


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
    if submitted:
        if password_matches(given, expected):
            st.session_state[_SIGNED_IN] = True
            # the typed password must not stay in the session's widget state
            st.session_state.pop("sign_in_password", None)
            st.rerun()
        logger.warning("dashboard sign-in failed")
        st.error("Wrong password.")
    return False
