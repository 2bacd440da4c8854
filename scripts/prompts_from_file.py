"""Prompts from file or textbox (A1111's built-in script): one generation per line, a line optionally in
A1111's ``--prompt "..." --steps 20`` form. The logic lives in :mod:`modules.scripts.prompt_lines`."""

from modules.scripts import prompt_lines as lines
from modules.scripts.script import Script


class PromptsFromFile(Script):
    title = lines.TITLE
    tabs = ("txt2img", "img2img")
    alwayson = False
    Args = lines.PromptLinesArgs
    a1111_args = lines.A1111_ARGS

    def args_from_positional(self, values, tab):
        return lines.args_from_positional(values)

    def precheck(self, request, args):
        return lines.plan_lines(request, args)

    def run(self, p, args):
        return lines.run_lines(p, args)
