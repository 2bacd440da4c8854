"""Loopback (A1111's built-in img2img script): each result is the next loop's init image, the denoising
strength moving along a curve. The logic lives in :mod:`modules.scripts.loopback`."""

from modules.scripts import loopback
from modules.scripts.script import Script


class Loopback(Script):
    title = loopback.TITLE
    tabs = ("img2img",)
    alwayson = False
    Args = loopback.LoopbackArgs
    a1111_args = loopback.A1111_ARGS

    def precheck(self, request, args):
        return loopback.plan_loops(request, args)

    def run(self, p, args):
        return loopback.run_loops(p, args)
