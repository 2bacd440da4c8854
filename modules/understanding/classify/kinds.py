"""The classification job kinds, for :mod:`modules.job_kinds`."""

from __future__ import annotations

from modules.understanding.classify.finetune_job import CLASSIFY_FINETUNE
from modules.understanding.classify.int8_job import CLASSIFY_INT8_CHECK
from modules.understanding.classify.job import CLASSIFY

KINDS = (CLASSIFY, CLASSIFY_INT8_CHECK, CLASSIFY_FINETUNE)
