"""The seed's classes in the remote profile: the same methods, answered by the server.

``SecretsManager()`` and its siblings become these subclasses when STRONGROOM_ADDR is set (or
when built over a :class:`~strongroom.client.transport.RemoteClient`): no master key, no
database, only the address and a token.
"""
