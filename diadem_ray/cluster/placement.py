"""Where actors run: the node of each actor handle, and a short human description of a node.

Example:
    >>> # placement.node_ids(learners.actors)  ->  ['3f2a…', '3f2a…']
    >>> # placement.describe('3f2a…')          ->  '3f2a9c1e (10.0.0.5; diadem_gpu_node)'
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import ray

_BUILT_IN = ("CPU", "GPU", "memory", "object_store_memory")


def _node_of(_actor: Any) -> str:
    return ray.get_runtime_context().get_node_id()


def node_ids(handles: Sequence[Any], timeout_s: float = 60.0) -> List[str]:
    """The node id (hex) each actor runs on, in order (``__ray_call__``: no method is needed on
    the actor class)."""
    return ray.get([h.__ray_call__.remote(_node_of) for h in handles], timeout=timeout_s)


def describe(node_id: str) -> str:
    """``<id prefix> (<ip>; <custom resources>)`` for a node the cluster knows."""
    for node in ray.nodes():
        if node["NodeID"] == node_id:
            custom = sorted(
                k
                for k in node.get("Resources", {})
                if k not in _BUILT_IN and not k.startswith("node:") and not k.startswith("accelerator_type")
            )
            return f"{node_id[:8]} ({node['NodeManagerAddress']}{'; ' + ', '.join(custom) if custom else ''})"
    return f"{node_id[:8]} (gone)"


def summary(roles: Dict[str, List[str]]) -> str:
    """``role: n on <node>, m on <node>; …`` for a mapping role -> node ids."""
    parts = []
    for role, ids in roles.items():
        counts: Dict[str, int] = {}
        for n in ids:
            counts[n] = counts.get(n, 0) + 1
        parts.append(f"{role}: " + ", ".join(f"{k} on {describe(n)}" for n, k in counts.items()))
    return "; ".join(parts)
