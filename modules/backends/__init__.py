"""Inference backends: PyTorch, ONNX Runtime and OpenVINO for a model's denoiser (the UNet).

* :mod:`.registry` -- the backends declared once (name, what it needs installed, the features it can run);
* :mod:`.export` -- the UNet exported once to ONNX, cached on disk by the model's hash and shapes;
* :mod:`.runtime_unet` -- a UNet stand-in that runs the exported graph on ONNX Runtime or OpenVINO;
* :mod:`.parity` -- the first-use check against PyTorch (one denoising call), recorded beside the export;
* :mod:`.scope` -- a job's backend: the stand-in put in the pipeline for the job, or a refusal naming the
  backend that can do what the request asks (LoRA, ControlNet), never a silent fall-back;
* :mod:`.quantize`, :mod:`.compile`, :mod:`.tuning` -- the PyTorch backend's int8 quantization (torchao) and
  ``torch.compile`` of the denoiser, applied at load by the model manager, refused on exported graphs;
* :mod:`.token_merging` -- token merging (ToMe) per pipeline call through the UNet's attention processors
  (``token_merging_ratio`` settings and request fields), refused on exported graphs;
* :mod:`.memory` -- memory modes and the peak memory of a job; :mod:`.status` -- what the page and
  ``/sdapi/v1/memory`` say (device, a model's backend, memory mode, the last job's memory line).

Everything else (text encoders, VAE, samplers, hooks) stays PyTorch: the UNet is where the time goes.
"""
