"""DreamBooth: a full fine-tune of a checkpoint (UNet, optionally the text encoder) with class-prior
preservation, after the diffusers recipe, as resumable sessions exported as single-file checkpoints.

* :mod:`.request` -- the typed ``train_dreambooth`` request;
* :mod:`.class_images` -- class images made once by the base model through queued ``txt2img`` jobs;
* :mod:`.options` -- the optimizer (AdamW, or 8-bit AdamW where bitsandbytes works) and mixed precision;
* :mod:`.trainer` -- the loop: instance + class halves in one forward pass, exact resume;
* :mod:`.export` -- the trained pipeline as one ``.safetensors`` in the original (LDM) layout;
* :mod:`.job` -- the ``train_dreambooth`` job kind (training lane, resumable, pauses for generation).

The session folder (config, state, loss log, samples) and the deterministic per-step batch come from the
LoRA trainer (:mod:`modules.training.lora`).
"""
