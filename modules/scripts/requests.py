"""The script part of a typed generation request (a leaf module: the request models import it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ScriptCall(BaseModel):
    """A selectable script to run the job (``X/Y/Z plot``...), with its arguments **by name**.

    ``args`` is validated against the script's own argument model when the job is submitted (an unknown
    script or a bad argument is refused there, naming it)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=200, description="the script's title (any case)")
    args: dict[str, Any] = Field(default_factory=dict, description="the script's arguments by name")

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("script name must not be blank")
        return value.strip()
