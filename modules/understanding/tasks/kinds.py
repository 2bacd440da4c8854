"""The understanding job kinds, for :mod:`modules.job_kinds`."""

from __future__ import annotations

from modules.understanding.tasks.ask import ASK
from modules.understanding.tasks.batch_caption import BATCH_CAPTION
from modules.understanding.tasks.caption import CAPTION
from modules.understanding.tasks.chat import CHAT
from modules.understanding.tasks.check import CHECK
from modules.understanding.tasks.extract import EXTRACT

KINDS = (CAPTION, ASK, EXTRACT, CHECK, CHAT, BATCH_CAPTION)
