"""A local high-availability cluster for the central store: etcd + Patroni-managed PostgreSQL.

`layout.py` plans ports and writes the etcd command lines and patroni.yml files;
`supervise.py` starts, kills, rejoins and stops the processes (`chot central cluster ...`).
"""

from central.cluster.layout import Layout, Node, Timing
from central.cluster.supervise import Cluster, ClusterError, Member

__all__ = ["Cluster", "ClusterError", "Layout", "Member", "Node", "Timing"]
