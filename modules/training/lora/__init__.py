"""LoRA training of a checkpoint's UNet through PEFT, as resumable sessions, exported in kohya keys.

* :mod:`.request` -- the typed ``train_lora`` request;
* :mod:`.dataset` -- images and captions of a folder, cropped and resized, encoded once;
* :mod:`.session` -- the session folder (config, checkpoint, loss log) and exact resume;
* :mod:`.trainer` -- the training loop (deterministic per step, so a resumed run equals a straight one);
* :mod:`.export` -- the adapter as a kohya ``.safetensors`` that A1111 and ``<lora:name:w>`` load;
* :mod:`.job` -- the ``train_lora`` job kind (training lane, resumable, pauses for generation).
"""
