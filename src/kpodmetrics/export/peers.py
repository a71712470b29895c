"""Owner pairs: who caused an owner's delay, named by the causer's owner labels.

A `PeerSample` says "cgroup A waited this long behind cgroup B". Both sides are
cgroups, and many cgroups can share an owner (nested container cgroups, every
unknown cgroup), so the pairs are folded per *owner* pair, once per cycle, before
they reach the series store:

- the peer is labelled with its owner's labels under the family's prefix
  (`holder_namespace`, `holder_pod`, `holder_container`; `holder_cgroup` standalone);
  a peer that is no pod (a node daemon, a filtered-out namespace) is `__host__`, one
  the resolver does not know `__unresolved__`, peer id 0 (an idle CPU) `__idle__`:
  every holder label then carries that value;
- per waiting owner, the `top_k` largest peers of the cycle keep their own series, the
  rest are summed into one `__other__` peer (`__idle__` is always its own and not
  counted in k): at most k + 2 series per owner, and nothing is dropped, so the peers
  of an owner always add up to its whole wait.

Each series stays a monotonic counter: a peer that falls out of the top k in a cycle
adds that cycle to `__other__` instead. A series leaves the export with either of its
owners: the waiter, or the holder (so a churning node's deleted pods do not pile up
as holder labels of long-lived waiters).
"""

from __future__ import annotations

from collections.abc import Iterable

from kpodmetrics.pods.owner import Resolver
from kpodmetrics.samples import Labels, PeerSample, Sample

IDLE = "__idle__"
OTHER = "__other__"
HOST = "__host__"
UNRESOLVED = "__unresolved__"
PREFIX = "holder_"
DEFAULT_TOP_K = 5


def special_labels(value: str, owner_label_names: tuple[str, ...]) -> Labels:
    """Holder labels of a holder that is no owner: every label carries `value`."""
    return tuple((PREFIX + n, value) for n in owner_label_names)


def peer_labels(resolver: Resolver, peer_id: int) -> tuple[Labels, str]:
    """The holder labels of one peer cgroup id, and its owner key ("" for specials)."""
    names = resolver.owner_label_names
    if peer_id == 0:
        return special_labels(IDLE, names), ""
    owner = resolver.resolve(peer_id)
    if owner is None:
        return special_labels(HOST if resolver.ignored(peer_id) else UNRESOLVED, names), ""
    return tuple((PREFIX + k, v) for k, v in owner.labels), owner.key


def fold_peers(samples: Iterable[PeerSample], resolver: Resolver,
               top_k: int = DEFAULT_TOP_K) -> list[Sample]:
    """One cycle's pairs -> delta samples of the waiters, labelled with their holders.

    Waiters the resolver ignores are dropped here as the store would drop them; an
    unknown waiter keeps its own cgroup id, so the store's unresolved policy applies."""
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, not {top_k}")
    names = resolver.owner_label_names
    idle, other = special_labels(IDLE, names), special_labels(OTHER, names)
    # waiter owner key -> (a cgroup id of that owner, family, holder labels -> value)
    groups: dict[tuple[str, str], tuple[int, dict[Labels, float]]] = {}
    families = {}
    keys: dict[Labels, str] = {}  # holder labels -> holder owner key
    named: dict[int, tuple[Labels, str]] = {}  # peer id -> peer_labels, once per call
    for s in samples:
        if s.value <= 0:
            continue
        owner = resolver.resolve(s.cgroup_id)
        if owner is None:
            if resolver.ignored(s.cgroup_id):
                continue
            key = (s.family.name, UNRESOLVED)
        else:
            key = (s.family.name, owner.key)
        families[s.family.name] = s.family
        _, acc = groups.setdefault(key, (s.cgroup_id, {}))
        got = named.get(s.peer_cgroup_id)
        if got is None:
            got = named[s.peer_cgroup_id] = peer_labels(resolver, s.peer_cgroup_id)
        labels, peer_key = got
        acc[labels] = acc.get(labels, 0.0) + s.value
        keys[labels] = peer_key
    out: list[Sample] = []
    for (family_name, _), (cgroup_id, acc) in groups.items():
        family = families[family_name]
        ranked = sorted(((v, lab) for lab, v in acc.items() if lab != idle), reverse=True)
        rest = sum(v for v, _ in ranked[top_k:])
        kept = [(lab, v) for v, lab in ranked[:top_k]]
        if idle in acc:
            kept.append((idle, acc[idle]))
        if rest > 0:
            kept.append((other, rest))
        out += [Sample(family, cgroup_id, v, labels=lab, peer_key=keys.get(lab, ""))
                for lab, v in kept]
    return out
