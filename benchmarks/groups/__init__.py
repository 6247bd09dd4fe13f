"""The benchmark groups, in the order they run; each is one module with a ``run``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.groups import (
    async_group,
    async_load,
    codecs,
    cold_start,
    django_group,
    files,
    hit_ratio,
    leases,
    local_open,
    local_processes,
    local_scaling,
    local_store,
    memory,
    redis_group,
    s3_group,
    scaling,
    shared,
    tags_group,
)
from benchmarks.model import GroupResult, Settings


@dataclass(frozen=True)
class Group:
    name: str  # for --group
    label: str  # for messages: "S3 group: ..."
    title: str  # for tables and the chart
    run: Callable[[Settings, GroupResult], None]


GROUPS: tuple[Group, ...] = (
    Group("memory", "Memory LRU", "Memory LRU (STORAGE_LRU)", memory.run),
    Group("files", "Files", "Files (STORAGE_JSON, STORAGE_PICKLE)", files.run),
    Group("scaling", "Scaling", "Scaling (STORAGE_DISKLRU, STORAGE_VOLATILE)", scaling.run),
    Group("codecs", "Codecs", "Codecs (Storage(Codec(c), Memory()))", codecs.run),
    Group("redis", "Redis", "Redis (local redis-server)", redis_group.run),
    Group("s3", "S3", "S3 (local SeaweedFS)", s3_group.run),
    Group(
        "django",
        "Django",
        "Django cache backends (SQLite, Redis)",
        django_group.run,
    ),
    Group("local", "Local store", "Local store (STORAGE_SQLITE)", local_store.run),
    Group(
        "local-scaling",
        "Local scaling",
        "Local store at 1,000,000 entries (STORAGE_SQLITE + limits)",
        local_scaling.run,
    ),
    Group("local-open", "Local open", "Opening each local stack (a new process)", local_open.run),
    Group(
        "local-processes",
        "Local processes",
        "8 processes on one local cache (diskcache's benchmark shape)",
        local_processes.run,
    ),
    Group(
        "async",
        "Async",
        "AsyncStorage (asyncio), and the sync hot path before/after it",
        async_group.run,
    ),
    Group(
        "shared",
        "Shared",
        "Shared stores: a bound and a memory front that hold across processes",
        shared.run,
    ),
    Group(
        "hit-ratio",
        "Hit ratio",
        "Hit ratios: eviction policies replaying real and generated traces",
        hit_ratio.run,
    ),
    Group(
        "tags",
        "Tags",
        "Tags: a tagged read against an untagged one, an invalidation at 100,000 entries",
        tags_group.run,
    ),
    Group(
        "cold-start",
        "Cold start",
        "Cold start: import, open and a command in a new process",
        cold_start.run,
    ),
    Group(
        "leases",
        "Leases",
        "Memoize's lock across processes: an uncontended miss, lease vs in-process lock",
        leases.run,
    ),
    Group(
        "async-load",
        "Async load",
        "Async Redis under load: autopipelining (100 tasks x 100 ops)",
        async_load.run,
    ),
)
