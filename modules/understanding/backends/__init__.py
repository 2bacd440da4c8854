"""Understanding backends: one interface (:mod:`.base`) over remote OpenAI-compatible services, local
transformers VLMs, OCR and the embedded shapes-world defaults."""
