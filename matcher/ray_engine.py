"""Running the batch pipeline on Ray: the same chunk function, many processes, one shared PostgreSQL.

`RayEngine` runs the chunks of a full run (`runs.process_chunk`, exactly what the local engine runs)
on a pool of Ray actors. The driver puts the run's `pipeline.Context` — the open policies with their
vectors and compiled rules — in Ray's object store once; each actor reads it once, opens its own
database connection, and then reads, scores and writes chunk after chunk. A chunk's rows and its
checkpoint are committed together, so a failed or repeated chunk is harmless and a killed run
resumes like a local one. `embed_on_ray` embeds firms the same way, one batch of ids per task.

Ray is optional: the local engine needs none of it, and this module is imported only for
`--engine ray`. See docs/ray.md for running it on a multi-node cluster.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from core.config import Settings
from matcher import pipeline, runs


def _init(address: str | None, num_cpus: int | None) -> Any:
    import ray  # deferred: Ray is an optional dependency of `--engine ray` only

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    return ray


class _ChunkWorker:
    """A Ray actor: one database connection and the run's context, reused for every chunk it gets."""

    def __init__(self, database_url: str, ctx: pipeline.Context) -> None:
        from core.db import Database

        self.database = Database(database_url)
        self.ctx = ctx

    def process(self, run_id: int, chunk_no: int) -> runs.ChunkDone:
        return runs.timed_chunk(self.database, self.ctx, run_id, chunk_no)


class _EmbedWorker:
    """A Ray actor holding one embedder and its cache."""

    def __init__(self, settings: Settings) -> None:
        from core.db import Database
        from matcher.engine import Matcher

        self.database = Database(settings.resolved_database_url)
        self.matcher = Matcher(settings)

    def embed(self, enterprise_ids: Sequence[int]) -> tuple[int, int]:
        return runs.embed_firms(self.database, self.matcher, list(enterprise_ids)), len(enterprise_ids)


class RayEngine:
    """Runs a full run's chunks on Ray actors (a local instance, or a cluster at `address`)."""

    def __init__(self, settings: Settings, *, address: str | None = None, workers: int | None = None) -> None:
        self.settings = settings
        self.address = address
        self.workers = workers or settings.ray_workers

    def run(self, run_id: int, chunk_numbers: Sequence[int], ctx: pipeline.Context) -> Iterable[runs.ChunkDone]:
        """Yield (chunk number, firms scored, the actor's CPU seconds on it) as actors finish chunks."""
        if not chunk_numbers:
            return
        ray = _init(self.address, self.workers)
        from ray.util import ActorPool

        shared = ray.put(ctx)
        worker = ray.remote(num_cpus=1)(_ChunkWorker)
        actors = [worker.remote(self.settings.resolved_database_url, shared) for _ in range(self.workers)]
        pool = ActorPool(actors)
        try:
            yield from pool.map_unordered(lambda actor, k: actor.process.remote(run_id, k), list(chunk_numbers))
        finally:
            for actor in actors:
                ray.kill(actor)


def embed_on_ray(
    settings: Settings, enterprise_ids: Sequence[int], *, address: str | None = None, batch: int = 2_000
) -> Iterable[tuple[int, int]]:
    """Embed firms on Ray actors, one batch of ids per task; yield (firms embedded, firms in the batch) per batch."""
    if not enterprise_ids:
        return
    workers = settings.ray_workers
    ray = _init(address, workers)
    from ray.util import ActorPool

    worker = ray.remote(num_cpus=1)(_EmbedWorker)
    actors = [worker.remote(settings) for _ in range(workers)]
    batches = [list(enterprise_ids[i : i + batch]) for i in range(0, len(enterprise_ids), batch)]
    try:
        yield from ActorPool(actors).map_unordered(lambda actor, ids: actor.embed.remote(ids), batches)
    finally:
        for actor in actors:
            ray.kill(actor)
