"""``strongroom edge``: a site's read-only replica of its upstream, served with the same API."""

from strongroom.edge.node import EdgeNode, edge_settings

__all__ = ["EdgeNode", "edge_settings"]
