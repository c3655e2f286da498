"""``queuewatch audit verify [FILE]``: check the audit log's hash chain.

Exit 0 when the chain holds (or the log predates it: said so), 1 at the first line that was
changed, removed or inserted, 2 when the log cannot be read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from queuewatch.cli.common import settings_from_args


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "audit", help="check the audit log of destructive actions for tampering",
        description="The audit log (audit_log, default <state_dir>/audit.jsonl) is hash-chained: "
        "each entry carries the hash of the line before it and of its own content.",
    )
    asub = p.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    asub.required = True
    v = asub.add_parser(
        "verify", help="find the first changed, removed or inserted entry (exit 1 if any)",
        description="Walk the hash chain from the first line. Exit 0 when it holds, 1 at the "
        "first line that breaks it, 2 when the log cannot be read. The chain has no secret "
        "key and cannot tell when the last lines were cut off the end.",
    )
    v.add_argument("file", nargs="?", metavar="FILE", help="the log (default: the audit_log setting)")
    v.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                   help="settings file (default: ./queuewatch.toml)")
    v.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from queuewatch.audit import verify

    path = Path(args.file) if args.file else settings_from_args(args).audit_log_path
    result = verify(path)
    if not result.intact:
        print(f"audit log {str(path)!r}: TAMPERED: line {result.bad_line} {result.reason}")
        return 1
    chained = result.entries - result.unchained
    if result.entries and not chained:
        print(f"audit log {str(path)!r}: {result.entries} entries, none hash-chained (written "
              "before queuewatch chained its entries); they cannot be verified")
        return 0
    older = (f"; the first {result.unchained} predate the chain and cannot be verified"
             if result.unchained else "")
    print(f"audit log {str(path)!r}: {result.entries} entries, hash chain intact{older}")
    return 0
