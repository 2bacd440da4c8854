"""ControlNet: units (sd-webui-controlnet fields), models, preprocessors, the UNet injection, the hook
that joins a job's passes, and the detect job kind."""
