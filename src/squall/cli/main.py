"""Entry point of the ``squall`` command.  Errors print one clear line and exit non-zero, never a traceback."""

from __future__ import annotations

import argparse
import sys

from squall.cli import up

__all__ = ["main", "version"]


def version() -> str:
    """The installed distribution's version (from its metadata), else the package's own ``__version__``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("squall")
    except PackageNotFoundError:
        import squall

        return str(getattr(squall, "__version__", "0+unknown"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="squall", description="Squall: serverless functions on your own machine")
    parser.add_argument("--version", action="version", version=f"squall {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    up.add_parser(sub)
    try:
        from squall.cli import commands

        commands.add_parsers(sub)
    except ImportError:
        pass
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # one clear line, no traceback
        from squall.core.errors import SquallError

        msg = e.message if isinstance(e, SquallError) else str(e)
        print(f"squall: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
