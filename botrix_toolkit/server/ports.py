"""Loopback ports for the servers the toolkit starts itself."""

from __future__ import annotations

import socket

#: Servers the toolkit starts listen on loopback only.
HOST = "127.0.0.1"




def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # valkey binds with SO_REUSEADDR too, so a port held only by TIME_WAIT
        # connections of a previous run counts as free, as it is for valkey.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])
