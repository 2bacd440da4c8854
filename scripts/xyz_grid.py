"""X/Y/Z plot (A1111's built-in script): one image per combination of up to three axes' values, in a labelled
grid. The logic lives in :mod:`modules.scripts.xyz` (axes, value syntax, the loop and the grid)."""

from modules.scripts.script import Script, ScriptArgsError
from modules.scripts.xyz import args as xyz_args
from modules.scripts.xyz import plot
from modules.scripts.xyz.axes import AxisError


class XYZPlot(Script):
    title = xyz_args.TITLE
    tabs = ("txt2img", "img2img")
    alwayson = False
    Args = xyz_args.XYZArgs
    a1111_args = xyz_args.A1111_ARGS

    def args_from_positional(self, values, tab):
        try:
            return xyz_args.args_from_positional(list(values), tab)
        except AxisError as exc:
            raise ScriptArgsError(f"script {self.title!r}: {exc}") from None

    def precheck(self, request, args):
        return list(plot.plan_grid(request, args).requests.values())

    def run(self, p, args):
        return plot.run_plot(p, args)

    def args_from_infotext(self, params):
        return xyz_args.args_from_infotext(params)
