"""Gallery search: embeddings of the images under ``outputs/`` in SQLite, exact cosine search with numpy.

* :mod:`.index` — the embeddings index (``<data dir>/understanding/embeddings.db``): one vector per image and
  model id, with the file's mtime and size, so a changed file is embedded again and vectors of different
  models never mix;
* :mod:`.exact` — top-k by cosine over a model's vectors (numpy);
* :mod:`.embedders` — which models can embed (the image classifiers of ``models/classifier`` through
  :mod:`modules.understanding.image_models`, and CLIP-like models of ``models/CLIP``, which also embed text);
* :mod:`.jobs` — the ``gallery_index`` (background, yields to generation) and ``gallery_search`` job kinds;
* :mod:`.auto_index` — new images are added to the index as they are saved (a queued background job after
  each generation, once the gallery has been indexed).
"""
