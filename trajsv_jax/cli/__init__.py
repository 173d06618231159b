"""`trajsv`: the command line. Thin: parse (parser.py, light imports only), call the library (commands.py), print
the result's report. Bad input ends in one line, never a traceback."""

from __future__ import annotations

import logging
import os
import sys
import time

from trajsv_jax.cli.commands import COMMANDS, OVERRIDABLE
from trajsv_jax.cli.parser import build_parser
from trajsv_jax.errors import UserError

__all__ = ["build_parser", "main"]


class _FlushingHandler(logging.Handler):
    """Writes each line to the current sys.stdout (so capture and redirection see it) and flushes it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:
            self.handleError(record)


class _NoReadOnlyWarning(logging.Filter):
    """Drops orbax's two notices that a read-only CheckpointManager will not save (embed and search open one)."""

    MESSAGES = (
        "CheckpointManagerOptions.read_only=True, setting save_interval_steps=0",
        "Given directory is read only=",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.MESSAGES)


def _configure_logging() -> None:
    """trajsv_jax's INFO progress lines as plain lines on stdout; every other library stays at WARNING."""
    logging.basicConfig(level=logging.WARNING)
    log = logging.getLogger("trajsv_jax")
    if not any(isinstance(h, _FlushingHandler) for h in log.handlers):
        handler = _FlushingHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    absl = logging.getLogger("absl")
    if not any(isinstance(f, _NoReadOnlyWarning) for f in absl.filters):
        absl.addFilter(_NoReadOnlyWarning())


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    overrides = [x for x in extra if x.startswith("--config.")] if args.command in OVERRIDABLE else []
    if len(overrides) != len(extra):
        parser.error(f"unrecognized arguments: {' '.join(x for x in extra if x not in overrides)}")
    _configure_logging()
    t0 = time.perf_counter()
    try:
        COMMANDS[args.command](args, overrides)
    except UserError as e:
        print(f"trajsv {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"trajsv {args.command}: interrupted", file=sys.stderr)
        return 130
    print(f"[{args.command} done in {time.perf_counter() - t0:.1f} s]", file=sys.stderr)
    return 0
