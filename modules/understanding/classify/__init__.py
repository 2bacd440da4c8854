"""Classification with the image models of ``models/classifier`` (:mod:`modules.understanding.image_models`):
the ``classify`` job (top-k labels, batched, float or a checked INT8 export), the INT8 agreement check
(ONNX export + dynamic quantization, measured against the float model on the user's own images) and
fine-tuning a classifier on a labelled folder."""
