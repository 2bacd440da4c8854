"""The X/Y/Z plot's arguments: by name (:class:`XYZArgs`), from A1111's positional ``script_args``, and
back from a grid's infotext (``Script: X/Y/Z plot, X Type: Steps, X Values: "10,20,30"``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modules.scripts.xyz.axes import AXES, AxisError, axis_index

TITLE = "X/Y/Z plot"

#: A1111 v1.10's positional order of the script's ``ui()`` values
A1111_ARGS: tuple[str, ...] = (
    "x_type", "x_values", "x_values_dropdown", "y_type", "y_values", "y_values_dropdown", "z_type", "z_values",
    "z_values_dropdown", "draw_legend", "include_lone_images", "include_sub_grids", "no_fixed_seeds",
    "vary_seeds_x", "vary_seeds_y", "vary_seeds_z", "margin_size", "csv_mode")

_LABELS = {axis.label.lower(): axis.label for axis in AXES}
#: every axis name (both tabs: one of the other tab's is refused, naming the tab, when the job is checked)
AXIS_NAMES: tuple[str, ...] = tuple(dict.fromkeys(axis.label for axis in AXES))
AxisName = Literal[AXIS_NAMES]  # type: ignore[valid-type]  # a dropdown in the UI and choices in script-info


class XYZArgs(BaseModel):
    """The X/Y/Z plot's arguments (A1111's names and UI defaults); an axis is given by its name."""

    model_config = ConfigDict(extra="forbid")

    x_type: AxisName = Field("Seed", title="X type",
                             description="X axis (e.g. Steps, CFG Scale, Sampler, Checkpoint name)")
    x_values: str = Field("", title="X values", max_length=20000,
                          description="CSV with quotes; number ranges 1-5, 1-10 (+2), 1-10 [5], 0.5-1.5 (+0.25)")
    x_values_dropdown: list[str] = Field(default_factory=list, title="X values (choices)",
                                         description="values picked from the axis' choices (used unless csv_mode; "
                                                     "empty: the text values)")
    y_type: AxisName = Field("Nothing", title="Y type", description="Y axis")
    y_values: str = Field("", title="Y values", max_length=20000)
    y_values_dropdown: list[str] = Field(default_factory=list, title="Y values (choices)")
    z_type: AxisName = Field("Nothing", title="Z type", description="Z axis (one sub-grid per value)")
    z_values: str = Field("", title="Z values", max_length=20000)
    z_values_dropdown: list[str] = Field(default_factory=list, title="Z values (choices)")
    draw_legend: bool = Field(True, title="Draw legend", description="draw the axis labels")
    include_lone_images: bool = Field(False, title="Include Sub Images",
                                      description="return every cell image after the grid")
    include_sub_grids: bool = Field(False, title="Include Sub Grids",
                                    description="return the Z sub-grids after the grid")
    no_fixed_seeds: bool = Field(False, title="Keep -1 for seeds",
                                 description="else a seed of -1 is fixed to one random seed for the whole grid")
    vary_seeds_x: bool = Field(False, title="Vary seeds for X", description="add the X index to the seed")
    vary_seeds_y: bool = Field(False, title="Vary seeds for Y", description="add the Y index (times the X count)")
    vary_seeds_z: bool = Field(False, title="Vary seeds for Z",
                               description="add the Z index (times the X and Y counts)")
    margin_size: int = Field(0, title="Grid margins (px)", ge=0, le=500, description="pixels between cells")
    csv_mode: bool = Field(False, title="Use text inputs instead of dropdowns",
                           description="use the text values even for axes with choices")

    @field_validator("x_type", "y_type", "z_type", mode="before")
    @classmethod
    def _known_axis(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("give the axis by name (an A1111 index is read only from positional script_args)")
        label = _LABELS.get(value.strip().lower())
        if label is None:
            raise ValueError(f"unknown axis {value!r}; axes: {', '.join(AXIS_NAMES)}")
        return label

    @field_validator("x_values_dropdown", "y_values_dropdown", "z_values_dropdown", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        if value is None:
            return []
        return [str(v) for v in value] if isinstance(value, (list, tuple)) else value

    @field_validator("x_values", "y_values", "z_values", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if value is None:
            return ""
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def args_from_positional(values: list[Any], tab: str) -> dict[str, Any]:
    """A1111 v1.10's positional list (axis types as that tab's **indices**) as named arguments."""
    if len(values) > len(A1111_ARGS):
        raise AxisError(f"script {TITLE!r} takes at most {len(A1111_ARGS)} positional arguments "
                        f"({', '.join(A1111_ARGS)}); got {len(values)}")
    named = dict(zip(A1111_ARGS, values))
    for key in ("x_type", "y_type", "z_type"):
        if key in named and not (isinstance(named[key], str) and not named[key].strip().lstrip("-").isdigit()):
            named[key] = axis_index(named[key], tab)
    return named


def args_from_infotext(params: dict[str, Any]) -> dict[str, Any] | None:
    """A grid's infotext parameters (:func:`modules.images.infotext.parse_infotext`) as the axes that made it;
    None when it is not an X/Y/Z plot's."""
    if str(params.get("Script", "")).strip() != TITLE:
        return None
    out: dict[str, Any] = {}
    for axis in ("X", "Y", "Z"):
        key = axis.lower()
        kind = params.get(f"{axis} Type")
        if kind is None:
            out[f"{key}_type"], out[f"{key}_values"] = "Nothing", ""
            continue
        out[f"{key}_type"] = str(kind)
        out[f"{key}_values"] = str(params.get(f"{axis} Values", ""))
        params.get(f"Fixed {axis} Values")  # read: the seeds drawn for -1 (pasting keeps the axis' own values)
    return out
