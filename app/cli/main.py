"""The `teachbox` entry point: run one command, turn its errors into a sentence and an exit status."""

from __future__ import annotations

import sys

from app.cli.parser import build_parser
from app.engine.errors import TeachboxError, TrainingCancelled


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except TeachboxError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except TrainingCancelled:
        print("Cancelled.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130
