"""Servers the toolkit runs itself: the embedded Valkey, a local cluster; and ``connect``."""
