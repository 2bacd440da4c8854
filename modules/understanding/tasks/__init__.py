"""Understanding tasks (caption, ask, extract, check, chat): each a typed request and a queued job kind.

``KINDS`` lists them for :mod:`modules.job_kinds`. Requests (for the Understand tab, the native job API and
scripts): :class:`.caption.CaptionRequest`, :class:`.ask.AskRequest`, :class:`.extract.ExtractRequest`,
:class:`.check.CheckRequest`, :class:`.chat.ChatRequest`.
"""
