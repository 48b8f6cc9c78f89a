"""The dask cluster a prediction runs on: a LocalCluster, an existing scheduler, or SLURM jobs
(dask-jobqueue). distributed and dask_jobqueue are imported only here, and only when asked for."""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

from .errors import UserError


@contextlib.contextmanager
def open_client(*, workers: int | None = None, scheduler: str | None = None,
                cluster: str | None = None, jobs: int | None = None,
                cluster_options: dict | None = None) -> Iterator[tuple[Any, int | None]]:
    """Yield ``(client, torch threads per worker)``: a LocalCluster of ``workers`` processes, an
    existing scheduler, or a SLURM cluster of ``jobs`` jobs (dask-jobqueue); ``(None, None)``
    when none is asked for."""
    if not (workers or scheduler or cluster):
        yield None, None
        return
    try:
        import logging

        from distributed import Client, LocalCluster
    except ImportError as e:
        raise UserError(f"distributed prediction needs dask.distributed ({e}): "
                        "pip install 'napari-unet[bigdata]'") from None
    if scheduler:
        with Client(scheduler) as client:
            yield client, None
        return
    if cluster:
        if cluster != "slurm":
            raise UserError(f"cluster must be 'slurm', got {cluster!r}")
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError:
            raise UserError("--cluster slurm needs dask-jobqueue: pip install dask-jobqueue") from None
        opts = dict(cluster_options or {})
        opts.setdefault("processes", 1)
        with SLURMCluster(**opts) as cl:
            cl.scale(jobs=int(jobs or 1))
            with Client(cl) as client:
                yield client, None
        return
    if int(workers) < 1:
        raise UserError(f"workers must be at least 1, got {workers}")
    threads = max(1, (os.cpu_count() or 1) // int(workers))
    with LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cl, Client(cl) as client:
        yield client, threads
