"""Prompt matrix (A1111's built-in script): every combination of the ``|``-separated optional parts of the
prompt, in a labelled grid. The logic lives in :mod:`modules.scripts.prompt_matrix`."""

from modules.scripts import prompt_matrix as matrix
from modules.scripts.script import Script


class PromptMatrix(Script):
    title = matrix.TITLE
    tabs = ("txt2img", "img2img")
    alwayson = False
    Args = matrix.PromptMatrixArgs
    a1111_args = matrix.A1111_ARGS

    def precheck(self, request, args):
        return matrix.plan_matrix(request, args)[1]

    def run(self, p, args):
        return matrix.run_matrix(p, args)
