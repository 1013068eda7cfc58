"""Edge replicas: the synchroniser that keeps a site's replica current from its upstream."""

from strongroom.services.edge.state import EdgeState
from strongroom.services.edge.sync import EdgeSync, EdgeSyncState, in_scope

__all__ = ["EdgeState", "EdgeSync", "EdgeSyncState", "in_scope"]
