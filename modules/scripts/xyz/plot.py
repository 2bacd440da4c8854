"""The X/Y/Z plot: plan the cells (values, fixed seeds, one typed request per cell, checked before anything
runs), run them (the most expensive axis outermost, one progress bar), then build the labelled grid.

What a run returns (A1111's order): the grid first (the Z sub-grids side by side under their Z labels),
then the sub-grids when ``include_sub_grids``, then every cell image when ``include_lone_images``. The grid
is saved in the grids folder with A1111's infotext (the first cell's, plus ``Script: X/Y/Z plot, X Type:
Steps, X Values: "10,20,30"``...). A stopped job keeps what it made: the cells not made, or skipped, are
blank (black) in the grid.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from modules.generation.validation import InvalidRequestError
from modules.scripts.xyz.args import TITLE, XYZArgs
from modules.scripts.xyz.axes import Axis, AxisError, find_axis
from modules.scripts.xyz.values import ValueSyntaxError, join_csv, parse_values

if TYPE_CHECKING:
    from PIL import Image

    from modules.generation.requests import GenerationRequest
    from modules.generation.results import GenerationResult
    from modules.scripts.script import ScriptJob

#: a grid of more cells than this is refused before anything runs
MAX_GRID_CELLS = 100
#: a grid image larger than this (in megapixels, labels included) is refused before anything runs
MAX_GRID_MEGAPIXELS = 64.0
#: the cell size assumed for the size check when the request leaves it to the model (checked again after the
#: first cell with the real size)
ASSUMED_CELL_SIZE = 512
#: A1111 draws random seeds with ``random.randrange(4294967294)``
SEED_RANGE = 4294967294


@dataclass
class AxisPlan:
    name: str              # "X", "Y" or "Z"
    axis: Axis
    values: list[Any]
    text: str              # the values as given (what the infotext's "X Values" holds)

    @property
    def labels(self) -> list[str]:
        return [self.axis.format(value) for value in self.values]


@dataclass
class GridPlan:
    """Every cell's request, in A1111's index order (x fastest, then y, then z), and the execution order."""

    tab: str
    args: XYZArgs
    base: "GenerationRequest"
    axes: tuple[AxisPlan, AxisPlan, AxisPlan]
    requests: dict[tuple[int, int, int], "GenerationRequest"] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(len(a.values) for a in self.axes)  # type: ignore[return-value]

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    def order(self) -> list[tuple[int, int, int]]:
        """The cells in the order they run: the costliest axis (checkpoint, VAE) outermost (A1111's rule)."""
        costs = [a.axis.cost for a in self.axes]
        x, y, z = costs
        first, second = 2, 1
        if x > y and x > z:
            first, second = 0, (1 if y > z else 2)
        elif y > x and y > z:
            first, second = 1, (0 if x > z else 2)
        elif z > x and z > y:
            first, second = 2, (0 if x > y else 1)
        third = ({0, 1, 2} - {first, second}).pop()
        shape = self.shape
        out = []
        for a in range(shape[first]):
            for b in range(shape[second]):
                for c in range(shape[third]):
                    index = [0, 0, 0]
                    index[first], index[second], index[third] = a, b, c
                    out.append((index[0], index[1], index[2]))
        return out


def tab_of(request: "GenerationRequest") -> str:
    return "txt2img" if getattr(request, "kind", "") == "txt2img" else "img2img"


def _refuse(message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{TITLE}: {message}")


def _axis_plan(name: str, args: XYZArgs, tab: str, fixed_seeds: bool, rng: random.Random) -> AxisPlan:
    key = name.lower()
    try:
        axis = find_axis(getattr(args, f"{key}_type"), tab)
    except AxisError as exc:
        raise _refuse(str(exc)) from None
    if not axis.supported:
        raise _refuse(f"{name} axis {axis.label!r} is not supported by this studio: {axis.refusal}")
    dropdown = getattr(args, f"{key}_values_dropdown")
    use_dropdown = axis.choices is not None and not args.csv_mode and bool(dropdown)
    text = join_csv(dropdown) if use_dropdown else getattr(args, f"{key}_values")
    try:
        values = parse_values(list(dropdown) if use_dropdown else text, axis.kind)
    except ValueSyntaxError as exc:
        raise _refuse(f"{name} values ({axis.label}): {exc}") from None
    if not values:
        raise _refuse(f"{name} axis {axis.label!r} has no values")
    if axis.is_seed and fixed_seeds:
        values = [rng.randrange(SEED_RANGE) if value in (None, -1) else value for value in values]
    return AxisPlan(name, axis, values, text)


def _validated(request: "GenerationRequest", update: dict[str, Any], what: str) -> "GenerationRequest":
    if not update:
        return request
    try:
        return type(request).model_validate({**request.model_dump(), **update})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise _refuse(f"{what}: {problems}") from None


def plan_grid(request: "GenerationRequest", args: XYZArgs, *, rng: random.Random | None = None) -> GridPlan:
    """Every cell's request, checked (axes, values, sizes, request fields, samplers); raises
    :class:`~modules.generation.validation.InvalidRequestError` naming what is wrong, before anything runs."""
    tab = tab_of(request)
    rng = rng or random.Random()
    fixed = not args.no_fixed_seeds
    axes = tuple(_axis_plan(name, args, tab, fixed, rng) for name in ("X", "Y", "Z"))
    base = request.model_copy(update={"script": None})
    if fixed:
        update = {k: rng.randrange(SEED_RANGE) for k in ("seed", "subseed") if getattr(base, k) == -1}
        base = base.model_copy(update=update)
    plan = GridPlan(tab, args, base, axes)  # type: ignore[arg-type]
    if plan.count > MAX_GRID_CELLS:
        raise _refuse(f"{' x '.join(map(str, plan.shape))} = {plan.count} cells is more than the limit of "
                      f"{MAX_GRID_CELLS} cells per grid")
    check_grid_size(plan, *estimated_cell_size(plan))
    nx, ny, nz = plan.shape
    for iz in range(nz):
        for iy in range(ny):
            for ix in range(nx):
                plan.requests[(ix, iy, iz)] = _cell_request(plan, ix, iy, iz)
    _check_needs(plan)
    _check_samplers(plan)
    return plan


def _check_needs(plan: GridPlan) -> None:
    for axis_plan in plan.axes:
        if axis_plan.axis.needs is None:
            continue
        check, what = axis_plan.axis.needs
        if not any(check(request) for request in plan.requests.values()):
            raise _refuse(f"the {axis_plan.name} axis {axis_plan.axis.label!r} would change nothing: {what}")


def _cell_request(plan: GridPlan, ix: int, iy: int, iz: int) -> "GenerationRequest":
    request = plan.base
    for axis_plan, index in zip(plan.axes, (ix, iy, iz)):
        value = axis_plan.values[index]
        what = f"{axis_plan.name} = {axis_plan.axis.format(value) or value!r}"
        try:
            update = axis_plan.axis.updates(request, value, axis_plan.values)
        except AxisError as exc:
            raise _refuse(f"{axis_plan.name} axis: {exc}") from None
        request = _validated(request, update, what)
    args, nx, ny = plan.args, plan.shape[0], plan.shape[1]
    if request.seed != -1:
        offset = (ix if args.vary_seeds_x else 0) + (iy * (nx if args.vary_seeds_x else 1) if args.vary_seeds_y
                                                     else 0)
        if args.vary_seeds_z:
            offset += iz * (nx if args.vary_seeds_x else 1) * (ny if args.vary_seeds_y else 1)
        if offset:
            request = _validated(request, {"seed": (request.seed + offset) % SEED_RANGE}, "varied seed")
    return request


def _check_samplers(plan: GridPlan) -> None:
    from modules.generation.sampling.samplers import SamplerError, resolve_sampler

    pairs = {(r.sampler_name, r.scheduler) for r in plan.requests.values()}
    pairs |= {(r.hr_sampler_name, r.scheduler) for r in plan.requests.values()
              if getattr(r, "hr_sampler_name", None)}
    for sampler, scheduler in sorted(pairs):
        try:
            resolve_sampler(sampler, scheduler)
        except SamplerError as exc:
            raise _refuse(str(exc)) from None


def estimated_cell_size(plan: GridPlan) -> tuple[int, int]:
    """A cell's size before anything ran: the request's (or the Size axis') size, a batch as its grid."""
    width = plan.base.width or ASSUMED_CELL_SIZE
    height = plan.base.height or ASSUMED_CELL_SIZE
    for axis_plan in plan.axes:
        if axis_plan.axis.label == "Size":
            sizes = [axis_plan.axis.updates(plan.base, v, axis_plan.values) for v in axis_plan.values]
            width, height = max(s["width"] for s in sizes), max(s["height"] for s in sizes)
    images = plan.base.batch_size * plan.base.n_iter
    if images > 1:
        from modules.images.grid import grid_rows

        rows = grid_rows(images)
        width, height = width * math.ceil(images / rows), height * rows
    return width, height


def grid_size(plan: GridPlan, cell_w: int, cell_h: int) -> tuple[int, int]:
    """The pixel size of the grid of ``plan`` with cells of ``cell_w`` x ``cell_h`` (labels and margins too)."""
    from modules.images.grid import labels, layout_annotations

    x, y, z = plan.axes
    nx, ny, nz = plan.shape
    if not plan.args.draw_legend:
        return nx * cell_w * nz, ny * cell_h
    sub_w, sub_h = layout_annotations(cell_w, cell_h, labels(x.labels), labels(y.labels), plan.args.margin_size).size
    return _titled_size(sub_w, sub_h, z.labels)


def _titled_size(sub_w: int, sub_h: int, titles: list[str]) -> tuple[int, int]:
    from modules.images.grid import labels, layout_annotations

    return layout_annotations(sub_w, sub_h, labels(titles), labels([""])).size


def check_grid_size(plan: GridPlan, cell_w: int, cell_h: int) -> None:
    width, height = grid_size(plan, cell_w, cell_h)
    megapixels = width * height / 1e6
    if megapixels > MAX_GRID_MEGAPIXELS:
        raise _refuse(f"the grid would be {width}x{height} ({megapixels:.1f} megapixels), more than the limit of "
                      f"{MAX_GRID_MEGAPIXELS:g} megapixels: use fewer values or a smaller size")


# --- running ---------------------------------------------------------------------------------------------


@dataclass
class Cell:
    result: "GenerationResult | None" = None
    image: "Image.Image | None" = None


def _cell_image(result: "GenerationResult") -> "Image.Image | None":
    from modules.images.grid import grid_rows, image_grid

    if not result.images:
        return None
    if len(result.images) == 1:
        return result.images[0]
    return image_grid(result.images, grid_rows(len(result.images)))  # a batch cell: its own grid, as A1111


def grid_params(plan: GridPlan, *, with_z: bool) -> dict[str, Any]:
    """What the grid's infotext adds to its first cell's: ``Script``, ``X Type``, ``X Values``..."""
    params: dict[str, Any] = {"Script": TITLE}
    for axis_plan in plan.axes if with_z else plan.axes[:2]:
        if axis_plan.axis.label == "Nothing":
            continue
        params[f"{axis_plan.name} Type"] = axis_plan.axis.label
        params[f"{axis_plan.name} Values"] = axis_plan.text
        if axis_plan.axis.is_seed and not plan.args.no_fixed_seeds:
            params[f"Fixed {axis_plan.name} Values"] = ", ".join(str(v) for v in axis_plan.values)
    return params


def add_params(infotext: str, params: dict[str, Any]) -> str:
    """``infotext`` with ``params`` added to its parameters line (before ``Version``, as A1111 orders them)."""
    from modules.images.infotext import build_params_line

    extra = build_params_line(params)
    *head, last = infotext.split("\n") if infotext else [""]
    at = last.find(", Version: ")
    last = f"{last[:at]}, {extra}{last[at:]}" if at >= 0 else (f"{last}, {extra}" if last else extra)
    return "\n".join([*head, last])


def run_plot(p: "ScriptJob", args: XYZArgs) -> "GenerationResult":
    """Run the grid on ``p`` (see the module docstring)."""
    from PIL import Image

    from modules.generation.results import GenerationResult
    from modules.images.grid import annotate_grid, image_grid, labels

    plan = plan_grid(p.request, args)
    cells: dict[tuple[int, int, int], Cell] = {}
    errors: list[Exception] = []
    stopped = False
    checked_size = False
    with p.cells(plan.count, "cell"):
        for index in plan.order():
            if p.control.should_stop:
                stopped = True
                break
            try:
                result = p.process(plan.requests[index])
            except Exception as exc:  # noqa: BLE001 - a failed cell is blank, as A1111's; all failed: raised
                errors.append(exc)
                p.warnings.append(f"{TITLE}: cell {_cell_name(plan, index)} failed: {exc}")
                continue
            skipped = bool(getattr(p.control, "should_skip_batch", False))
            image = None if skipped else _cell_image(result)
            cells[index] = Cell(result, image)
            stopped = stopped or result.interrupted
            if image is not None and not checked_size:
                check_grid_size(plan, image.width, image.height)  # the model's own size, when the request had none
                checked_size = True
    made = [cell for cell in cells.values() if cell.result is not None]
    if errors and not made:
        raise errors[0]
    nx, ny, nz = plan.shape
    sizes = [cell.image.size for cell in cells.values() if cell.image is not None]
    blank_size = sizes[0] if sizes else estimated_cell_size(plan)
    x, y, z = plan.axes
    sub_grids: list[Image.Image] = []
    for iz in range(nz):
        images = [(cells.get((ix, iy, iz)) or Cell()).image or Image.new("RGB", blank_size)
                  for iy in range(ny) for ix in range(nx)]
        grid = image_grid(images, rows=ny)
        if args.draw_legend:
            cell_w, cell_h = max(i.width for i in images), max(i.height for i in images)
            grid = annotate_grid(grid, cell_w, cell_h, labels(x.labels), labels(y.labels), args.margin_size)
        sub_grids.append(grid)
    main = image_grid(sub_grids, rows=1)
    if args.draw_legend:
        main = annotate_grid(main, max(g.width for g in sub_grids), max(g.height for g in sub_grids),
                             labels(z.labels), labels([""]))
    return _result(p, plan, cells, main, sub_grids, stopped, GenerationResult)


def _cell_name(plan: GridPlan, index: tuple[int, int, int]) -> str:
    parts = [a.axis.format(a.values[i]) for a, i in zip(plan.axes, index)]
    return ", ".join(part for part in parts if part) or str(index)


def _first_made(plan: GridPlan, cells: dict[tuple[int, int, int], Cell], iz: int | None) -> "GenerationResult | None":
    preferred = [(0, 0, iz if iz is not None else 0)]
    for index in preferred + sorted(cells, key=lambda i: (i[2], i[1], i[0])):
        cell = cells.get(index)
        if cell is not None and cell.result is not None and cell.result.infotexts and (iz is None or index[2] == iz):
            return cell.result
    return None


def _result(p: "ScriptJob", plan: GridPlan, cells: dict[tuple[int, int, int], Cell], main: "Image.Image",
            sub_grids: list["Image.Image"], stopped: bool, result_type: type) -> "GenerationResult":
    from modules.images.infotext import build_infotext

    first = _first_made(plan, cells, None)
    if first is not None:
        out = replace(first, images=[], infotexts=[], paths=[], seeds=[], subseeds=[], prompts=[],
                      negative_prompts=[], warnings=[])
    else:
        out = result_type()

    def add(image: "Image.Image", infotext: str, path: Any, source: "GenerationResult | None", at: int = 0) -> None:
        out.images.append(image)
        out.infotexts.append(infotext)
        out.paths.append(path)
        out.seeds.append(source.seeds[at] if source and source.seeds else plan.base.seed)
        out.subseeds.append(source.subseeds[at] if source and source.subseeds else plan.base.subseed)
        out.prompts.append(source.prompts[at] if source and source.prompts else plan.base.prompt)
        out.negative_prompts.append(source.negative_prompts[at] if source and source.negative_prompts
                                    else plan.base.negative_prompt)

    def infotext_of(source: "GenerationResult | None", with_z: bool) -> str:
        params = grid_params(plan, with_z=with_z)
        if source is None:  # nothing was made (stopped at once): the grid's own parameters only
            return build_infotext(plan.base.prompt, plan.base.negative_prompt, params)
        return add_params(source.infotexts[0], params)

    nz = plan.shape[2]
    main_text = infotext_of(first, True)
    seed = first.seeds[0] if first is not None and first.seeds else max(plan.base.seed, 0)
    add(main, main_text, p.save_grid(main, main_text, seed=seed), first)
    sub_sources = [_first_made(plan, cells, iz) for iz in range(nz)]
    sub_texts = [infotext_of(source, False) for source in sub_sources]
    sub_paths = [None] * nz
    if nz > 1:  # A1111 saves the sub-grids too when there are several
        sub_paths = [p.save_grid(grid, text, seed=source.seeds[0] if source and source.seeds else seed)
                     for grid, text, source in zip(sub_grids, sub_texts, sub_sources)]
    if plan.args.include_sub_grids:
        for grid, text, path, source in zip(sub_grids, sub_texts, sub_paths, sub_sources):
            add(grid, text, path, source)
    nx, ny, _ = plan.shape
    for iz in range(nz):
        for iy in range(ny):
            for ix in range(nx):
                cell = cells.get((ix, iy, iz))
                if cell is None or cell.result is None or cell.image is None:
                    continue  # not made, failed or skipped: blank in the grid, no lone image
                if plan.args.include_lone_images:
                    result = cell.result
                    for i, image in enumerate(result.images):
                        add(image, result.infotexts[i], result.paths[i] if i < len(result.paths) else None,
                            result, i)
    for cell in cells.values():
        if cell.result is not None:
            out.warnings.extend(w for w in cell.result.warnings if w not in out.warnings)
            out.seconds += cell.result.seconds if cell.result is not first else 0.0
    out.interrupted = stopped
    return out
