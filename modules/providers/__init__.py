"""Remote image providers the studio can send a generation to (a lane of their own): Black Forest Labs'
FLUX.1 Pro API (:mod:`.bfl`, its job kind in :mod:`.bfl_job`)."""
