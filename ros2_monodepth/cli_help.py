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
