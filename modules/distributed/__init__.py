"""The device lane spread over a Ray cluster (``--ray auto|ADDRESS``; docs/scaling.md).

The studio's SQLite queue stays the one source of truth: submission, fairness, idempotency, cancel,
history and outputs are the queue's as without Ray. With ``--ray``, the device lane gets one worker
thread per Ray actor (:meth:`modules.jobs.queue.JobQueue.set_lane_width`); a worker hands its job's typed
request (JSON) to a free actor, preferring one that holds the job's checkpoint, follows its progress and
previews, and writes the images the actor sends back (:mod:`.dispatch`). Each actor
(:mod:`.worker`) loads its own models from the same data dir path. Nothing here imports Ray at module
top level: without ``--ray`` Ray is never imported.
"""
