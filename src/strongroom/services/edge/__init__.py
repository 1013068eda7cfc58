"""Edge replicas: the synchroniser that keeps a site's replica current from its upstream."""

from strongroom.services.edge.state import EdgeState, EdgeSyncState
from strongroom.services.edge.sync import EdgeSync
from strongroom.services.edge.upstream import in_scope

__all__ = ["EdgeState", "EdgeSync", "EdgeSyncState", "in_scope"]
