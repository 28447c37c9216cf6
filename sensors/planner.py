"""Which partitions to re-run: a pure plan over the latest materialisation of each partition.

The pipeline has three partition kinds: none (corpus), layer, and range (layer x latents).
A *group* is a run's worth of assets: same kind, same stage. The stage rises by one
wherever a dependency crosses kinds, so corpus -> (sparse_coder, activations) ->
(latent_shards .. scores) -> report, and a group's assets run together in one run of
one partition, in dependency order.

A partition is *stale* when a parent partition was materialised after it (storage ids
are monotonic), *missing* when it has never been materialised. A partition is only
planned when nothing upstream of it is still to run in another run or is in flight, so
a range never reads a layer's activations while they are being rewritten; what it
waits for is planned on a later tick. A roll-up (report) covers the ranges that exist:
ranges still to be created do not hold it back, so one failing range cannot starve it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["none", "layer", "range"]
# None (unpartitioned), "layers.3" (layer) or ("layers.3", "00000-00063") (range)
PartitionKey = str | tuple[str, str] | None
Group = tuple[int, Kind]


@dataclass(frozen=True)
class Node:
    name: str
    kind: Kind
    parents: tuple[str, ...]


@dataclass(frozen=True)
class Graph:
    """Asset nodes in topological order, with their stage (see the module docstring)."""

    nodes: tuple[Node, ...]
    stage: Mapping[str, int]

    @classmethod
    def build(cls, nodes: Iterable[Node]) -> Graph:
        pending = {n.name: n for n in nodes}
        ordered: list[Node] = []
        kind: dict[str, Kind] = {}
        stage: dict[str, int] = {}
        while pending:
            # Parents outside the graph (e.g. source assets) do not order anything.
            ready = [n for n in pending.values() if all(p in stage or p not in pending for p in n.parents)]
            if not ready:
                raise ValueError(f"dependency cycle among {sorted(pending)}")
            for n in sorted(ready, key=lambda n: n.name):
                stage[n.name] = max((stage[p] + (kind[p] != n.kind) for p in n.parents if p in stage), default=0)
                kind[n.name] = n.kind
                ordered.append(n)
                del pending[n.name]
        return cls(tuple(ordered), stage)

    def group(self, name: str) -> Group:
        return self.stage[name], self.node(name).kind

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def groups(self) -> dict[Group, list[str]]:
        out: dict[Group, list[str]] = {}
        for n in self.nodes:
            out.setdefault(self.group(n.name), []).append(n.name)
        return out


@dataclass(frozen=True)
class Scope:
    """The partitions to consider: layers and, per layer, the latent ranges its coder has."""

    ranges: Mapping[str, tuple[str, ...]]

    def partitions(self, kind: Kind) -> list[PartitionKey]:
        if kind == "none":
            return [None]
        if kind == "layer":
            return list(self.ranges)
        return [(layer, r) for layer, rs in self.ranges.items() for r in rs]


@dataclass(frozen=True)
class Request:
    group: Group
    assets: tuple[str, ...]
    partition: PartitionKey
    reason: str
    fingerprint: str  # digest of the storage ids it was planned from: same state, same key


@dataclass
class Plan:
    requests: list[Request] = field(default_factory=list)
    waiting: dict[tuple[str, PartitionKey], str] = field(default_factory=dict)  # dirty but blocked, with why


def _parent_partitions(parent_kind: Kind, child_kind: Kind, p: PartitionKey, scope: Scope) -> list[PartitionKey]:
    if parent_kind == "none":
        return [None]
    if parent_kind == child_kind:
        return [p]
    layer = p[0] if isinstance(p, tuple) else p
    if parent_kind == "layer":
        return [layer]
    if child_kind == "none":
        raise ValueError("an unpartitioned asset cannot depend on a partitioned one here")
    return [(layer, r) for r in scope.ranges.get(layer, ())]  # a layer roll-up of its ranges


def plan(
    graph: Graph,
    scope: Scope,
    latest: Mapping[str, Mapping[PartitionKey, int]],
    in_flight: set[PartitionKey] | None = None,
    *,
    fill_missing: bool,
    forced: Iterable[tuple[str, PartitionKey]] = (),
) -> Plan:
    """Runs that bring `scope` up to date.

    latest: per asset, the storage id of each partition's latest materialisation.
    in_flight: partitions with a queued or running run; None in it (an unpartitioned or
        multi-partition run) holds everything back.
    fill_missing: also plan partitions never materialised (else only re-run existing ones).
    forced: (asset, partition) pairs to re-run whatever their state, e.g. after a model update.
    """
    in_flight = in_flight or set()
    forced = set(forced)
    state: dict[tuple[str, PartitionKey], str] = {}  # clean | selected | waiting
    result = Plan()
    selected: dict[tuple[Group, PartitionKey], list[str]] = {}
    reasons: dict[tuple[Group, PartitionKey], list[str]] = {}
    prints: dict[tuple[Group, PartitionKey], list[str]] = {}
    names = {n.name for n in graph.nodes}
    for node in graph.nodes:
        group = graph.group(node.name)
        own = latest.get(node.name, {})
        for p in scope.partitions(node.kind):
            sid = own.get(p)
            blocked = "a run of this partition is in flight" if None in in_flight or p in in_flight else ""
            missing_parent = ""
            newer: list[str] = []
            fingerprint = [f"{node.name}:{p}:{sid}"]
            same_run_parent = False
            for parent in (q for q in node.parents if q in names):
                pnode = graph.node(parent)
                pids = latest.get(parent, {})
                rollup = pnode.kind == "range" and node.kind == "layer"  # stale again when new ranges land
                present = [q for q in _parent_partitions(pnode.kind, node.kind, p, scope)
                           if q in pids or (not rollup and state.get((parent, q)) == "selected")]
                if not present:
                    missing_parent = f"upstream {parent} is missing"
                for q in present:
                    qstate, qsid = state.get((parent, q), "clean"), pids.get(q)
                    fingerprint.append(f"{parent}:{q}:{qsid}")
                    if q in in_flight:
                        blocked = blocked or f"upstream {parent} is in flight"
                    elif qstate == "waiting" or (qstate == "selected" and graph.group(parent) != group):
                        blocked = blocked or f"upstream {parent} runs first"
                    elif qstate == "selected":
                        same_run_parent = True
                    elif sid is not None and qsid is not None and qsid > sid:
                        newer.append(parent)
            if (node.name, p) in forced:
                reason = "forced"
            elif sid is None:
                reason = "missing" if fill_missing else ""
            elif newer or same_run_parent:
                reason = f"stale: {', '.join(newer) or 'upstream'} re-run"
            else:
                reason = ""
            if blocked:  # descendants wait too: whatever is dirty or busy here will change below
                state[(node.name, p)] = "waiting"
                if reason:
                    result.waiting[(node.name, p)] = blocked
            elif reason and missing_parent:
                state[(node.name, p)] = "waiting"
                result.waiting[(node.name, p)] = missing_parent
            elif reason:
                state[(node.name, p)] = "selected"
                key = (group, p)
                selected.setdefault(key, []).append(node.name)
                reasons.setdefault(key, []).append(f"{node.name} {reason}")
                prints.setdefault(key, []).extend(fingerprint)
            else:
                state[(node.name, p)] = "clean"
    for (group, p), assets in selected.items():
        digest = hashlib.sha256("\n".join(sorted(set(prints[(group, p)]))).encode()).hexdigest()[:12]
        result.requests.append(Request(group, tuple(assets), p, "; ".join(reasons[(group, p)]), digest))
    return result
