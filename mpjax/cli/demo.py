"""``mpjax demo [--out DIR]``: the full prune job on the shipped Fashion-MNIST ViT.

CAST 2:4 with an input-channel permutation and ToMe, then a short distillation: the same as
``mpjax prune shipped --method cast --pattern 2:4 --permute --tome 1 --data fashion-mnist
--distill-steps 300``. Every option of ``mpjax prune`` may override these defaults.
"""

from __future__ import annotations

import argparse

from mpjax.cli.prune import DESCRIPTION, add_job_arguments, print_report, run_checked
from mpjax.pipeline import SHIPPED

#: The demo: CAST 2:4 with a permutation and ToMe on the shipped ViT, then a short distillation.
DEMO = dict(method="cast", pattern="2:4", data="fashion-mnist", tome=1, permute=True,
            distill_steps=300)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``mpjax demo`` (the options of ``mpjax prune`` with :data:`DEMO` defaults)."""
    parser = argparse.ArgumentParser(prog="mpjax demo", description=DESCRIPTION)
    add_job_arguments(parser, out_required=False)
    parser.set_defaults(**DEMO)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mpjax demo``.

    Raises:
      ValueError: for a bad option or ``--out`` (named in the message).
    """
    args = build_parser().parse_args(argv)
    print_report(run_checked(args, SHIPPED, "demo"), args.out)
    return 0
