"""The queue itself: key names, the job model, errors, Lua scripts and the operations.

Depends on redis-py alone (no pandas): a worker that only claims and completes
jobs imports nothing more. Every layer above builds on this one.
"""
