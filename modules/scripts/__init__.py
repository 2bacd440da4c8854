"""Scripts and extensions: the studio's hook registry users extend.

* :mod:`.script` -- the :class:`~modules.scripts.script.Script` base class (title, where it shows, typed
  arguments as a pydantic model, ``run`` and the A1111 process hooks) and the objects hooks receive.
* :mod:`.callbacks` -- the one callback registry (app started, model loaded, image saved, UI tabs and
  settings, infotext pasted, per step), each with a typed parameter object, in a stable order.
* :mod:`.registry` -- the scripts the studio knows, per tab, selectable or always on.
* :mod:`.sources` -- finding ``scripts/*.py`` and ``extensions/*/``, their content hashes, the user's
  approvals (kept in the data dir) and loading approved code with every failure isolated.
* :mod:`.running` -- a generation job with scripts: typed copies of the request, the hooks on the
  existing :class:`~modules.generation.addons.hooks.SamplingHook` seam, errors reported, images kept.
* :mod:`.requests` -- the script part of a generation request (``script`` and ``alwayson_scripts``).

Nothing here imports torch or Gradio at import time.
"""
