"""Dropping a test's own connections to a server that other pytest-xdist workers share."""

from __future__ import annotations

import redis


def kill_clients_on_this_database(admin: redis.Redis) -> int:
    """Drops every normal connection on ``admin``'s database but its own; returns how many.

    ``CLIENT KILL TYPE normal`` would also drop other workers' connections
    to a shared server (tests/conftest.py's docstring): this kills only this worker's.
    """
    database = int(admin.connection_pool.connection_kwargs.get("db", 0))
    own_id = admin.client_id()
    victims = [int(client["id"]) for client in admin.client_list(_type="normal")
               if int(client["db"]) == database and int(client["id"]) != own_id]
    return sum(admin.client_kill_filter(_id=victim) for victim in victims)
