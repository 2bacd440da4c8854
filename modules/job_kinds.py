"""Every job kind the studio runs, gathered from the modules that declare them (one line per module).

A kind is declared beside its logic (:class:`modules.jobs.kinds.JobKind`); this list is the only place
that names the declaring modules, so :func:`modules.app_context.create_app_context` builds the
registry from it and the queue, the native API and the UI derive everything else.
"""

from __future__ import annotations

from modules.jobs.kinds import JobKind


def builtin_kinds() -> list[JobKind]:
    from modules.generation.controlnet import detect_job as controlnet_detect_job
    from modules.generation import job_kinds as generation
    from modules.images import extras_job
    from modules.models import download_job, file_jobs, load_job
    from modules.providers import bfl_job
    from modules.training import embedding_job as train_embedding_job
    from modules.training.dreambooth import job as train_dreambooth_job
    from modules.training.lora import job as train_lora_job
    from modules.understanding import interrogate_job
    from modules.understanding.tasks import kinds as understanding
    from modules.understanding.classify import kinds as classify
    from modules.understanding.search import jobs as gallery_search

    return [*generation.KINDS, *load_job.KINDS, *extras_job.KINDS, *interrogate_job.KINDS,
            *controlnet_detect_job.KINDS, *understanding.KINDS, *classify.KINDS, *gallery_search.KINDS,
            *train_lora_job.KINDS, *train_embedding_job.KINDS, *train_dreambooth_job.KINDS, *download_job.KINDS,
            *file_jobs.KINDS, *bfl_job.KINDS]
