"""The remote profile's transport: one HTTPS client per process that speaks to `strongroom serve`.

``RemoteClient`` sends requests with the caller's token, retries idempotent calls with back-off
and turns the server's error bodies back into strongroom's typed errors; ``credentials`` keeps
the token of ``strongroom login`` in a per-user file (mode 0600).
"""
