"""The ``gridscope`` command line: thin wiring from flags to pipelines and the app.

Each subcommand lives in ``app/commands/<name>.py`` with ``add_parser(subparsers)``
and ``run(args) -> int``. Errors a user can fix (bad flags, bad files, bad
queries) are printed as one line on stderr with exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main"]

_COMMANDS = ("serve", "export", "catalog", "build", "demo")


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that reports errors in one line (and exits 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"gridscope: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="gridscope",
        description="Explore huge gridded Earth datasets: serve the dashboard, export views, build derived stores.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)
    for name in _COMMANDS:
        module = importlib.import_module(f"app.commands.{name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gridscope`` console script."""
    from app.commands import user_errors

    parser = build_parser()
    args = parser.parse_args(_protect_negative_numbers(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.run(args) or 0)
    except user_errors() as exc:
        print(f"gridscope: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gridscope: interrupted", file=sys.stderr)
        return 130


def _protect_negative_numbers(argv: list[str]) -> list[str]:
    """Let users type ``--bbox -80,0,-10,60`` and ``--point -140,0``.

    argparse takes a value starting with ``-`` for a flag; joining it as
    ``--bbox=-80,...`` keeps it a value.
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if (
            arg.startswith("--")
            and "=" not in arg
            and i + 1 < len(argv)
            and len(argv[i + 1]) > 1
            and argv[i + 1][0] == "-"
            and (argv[i + 1][1].isdigit() or argv[i + 1][1] == ".")
        ):
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
