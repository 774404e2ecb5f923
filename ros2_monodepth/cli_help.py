"""The help format of every command-line tool: each option's default shown once, and only where it says something.

argparse's ArgumentDefaultsHelpFormatter appends ``(default: X)`` to every option, including flags (where it
shows the opposite of what the flag does), options whose default is computed (None) and help texts that already
explain their default. This formatter leaves those alone and keeps the description's line breaks.

>>> import argparse
>>> p = argparse.ArgumentParser(formatter_class=HelpFormatter)
>>> _ = p.add_argument("--epochs", type=int, default=20, help="passes")
>>> _ = p.add_argument("--no-augment", action="store_true", help="no colour jitter")
>>> text = p.format_help()
>>> "passes (default: 20)" in text, "jitter (default" in text
(True, False)
"""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "default:" in text.lower() or "default " in text.lower():
            return text
        if action.default is None or action.default is argparse.SUPPRESS or isinstance(action.default, bool):
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text
        if action.default == [] or action.default == "":
            return text
        return text + " (default: %(default)s)"


def size_option(text: str) -> tuple:
    """argparse ``type`` of every WIDTHxHEIGHT option (--network-size, --camera-size): (height, width).

    >>> size_option("640x480")
    (480, 640)
    """
    from .core.model_contract import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def network_size_option(text: str) -> tuple:
    """``size_option`` for a network input: multiples of 32.

    >>> network_size_option("320x100")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: 320x100: expected multiples of 32 (the encoder halves the size five times)
    """
    from .core.model_contract import size_problem

    size = size_option(text)
    if size_problem(size):
        raise argparse.ArgumentTypeError(f"{text}: {size_problem(size)}")
    return size
