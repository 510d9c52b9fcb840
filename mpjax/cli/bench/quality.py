"""``mpjax bench quality``: accuracy of the pruning methods, with and without refit and distillation.

On the shipped Fashion-MNIST ViTs (``--models shipped,shipped-wide``), for every method,
pattern (``unstructured`` at each ``--sparsities`` value, ``2:4``, ``4:8``, ``8:16``), ToMe
setting (``r = 0``, plus ``--tome`` at 2:4), reconstruction mode (``--reconstruct off,...``),
distillation budget (``--steps 0,200``) and calibration seed: prune one-shot from
``--calib-images`` training images, refit, distill, evaluate on the test split
(:mod:`mpjax.pipeline.compare`). Every row goes to ``--json FILE`` as soon as it is done; a
rerun with the same file skips the rows it holds (resume). Prints mean +- std over seeds per
setting, then per model, pattern and budget the best MP-guided method (seb, ser, cast) against
the best baseline (magnitude, wanda, sparsegpt, ria) measured in the same file.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from mpjax.pipeline import compare, oneshot
from mpjax.pruning import METHODS

#: The methods compared by default: baselines first, then the MP-guided ones.
BASELINES = ("magnitude", "wanda", "sparsegpt", "ria")
MP_GUIDED = ("seb", "ser", "cast")
#: Default patterns (``unstructured`` runs at each ``--sparsities`` value).
PATTERNS = ("unstructured", "2:4", "4:8", "8:16")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``mpjax bench quality``."""
    p = argparse.ArgumentParser(prog="mpjax bench quality", description=__doc__.splitlines()[0])
    p.add_argument("--models", default="shipped", help="comma list: shipped, shipped-wide")
    p.add_argument("--methods", default=",".join(BASELINES + MP_GUIDED), help="comma list")
    p.add_argument("--patterns", default=",".join(PATTERNS), help="comma list")
    p.add_argument("--sparsities", default="0.5", help="comma list, for unstructured")
    p.add_argument("--reconstruct", default="off,sequential",
                   help=f"comma list of {oneshot.RECONSTRUCT_MODES}")  # fmt: skip
    p.add_argument("--steps", default="0", help="comma list of distillation steps (0: none)")
    p.add_argument("--seeds", type=int, default=3, help="calibration seeds 0..N-1")
    p.add_argument("--tome", type=int, default=1, help="ToMe r of the extra 2:4 rows (0: none)")
    p.add_argument("--budget", default=None, choices=oneshot.BUDGETS,
                   help="per-layer budget of the unstructured methods that take one")  # fmt: skip
    p.add_argument("--calib-images", type=int, default=256)
    p.add_argument("--eval-images", type=int, default=None, help="default: all 10000")
    p.add_argument("--json", default=None, help="rows file (appended to; rerun to resume)")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    p.add_argument("--print-only", action="store_true",
                   help="run nothing: print the tables of the rows --json already holds")  # fmt: skip
    return p


def grid_from_args(args: argparse.Namespace) -> compare.Grid:
    """The :class:`~mpjax.pipeline.compare.Grid` of parsed options, checked flag by flag.

    Raises:
      ValueError: naming the flag at fault.
    """
    methods, patterns = _csv(args.methods), _csv(args.patterns)
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"--methods {m}: choose from {tuple(METHODS)}.")
    for mode in _csv(args.reconstruct):
        if mode not in oneshot.RECONSTRUCT_MODES:
            raise ValueError(f"--reconstruct {mode}: choose from {oneshot.RECONSTRUCT_MODES}.")
    try:
        sparsities = tuple(float(s) for s in _csv(args.sparsities))
        steps = tuple(int(s) for s in _csv(args.steps))
    except ValueError:
        raise ValueError("--sparsities / --steps: comma lists of numbers, e.g. 0.5,0.6 and "
                         "0,200.") from None  # fmt: skip
    if not all(0 < s < 1 for s in sparsities) or not all(s >= 0 for s in steps):
        raise ValueError("--sparsities must lie in (0, 1) and --steps be >= 0.")
    if args.seeds < 1 or args.calib_images < 1 or args.tome < 0:
        raise ValueError("--seeds and --calib-images must be >= 1 and --tome >= 0.")
    targets = []
    for pattern in patterns:
        if pattern == "unstructured":
            targets += [(pattern, s) for s in sparsities]
        else:
            k, n = _pattern(pattern)
            targets.append((pattern, 1 - k / n))
    return compare.Grid(
        models=_csv(args.models), methods=methods, targets=tuple(targets),
        reconstruct=_csv(args.reconstruct), steps=steps, seeds=tuple(range(args.seeds)),
        tome=args.tome, budget=args.budget, calib_images=args.calib_images,
        eval_images=args.eval_images,
    )  # fmt: skip


def _pattern(text: str) -> tuple[int, int]:
    from mpjax.arch import parse_pattern

    try:
        return tuple(parse_pattern(text))
    except ValueError:
        raise ValueError(f"--patterns {text}: expected unstructured or K:N, e.g. 2:4.") from None


def group_rows(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows by ``(model, method, target, tome, reconstruct, budget, steps)``: one per seed."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        key = (r["model"], r["method"], target_label(r), r["tome"], r["reconstruct"], r["budget"],
               r["steps"])  # fmt: skip
        groups[key].append(r)
    return groups


def target_label(row: dict) -> str:
    """``"50% unstr."`` or the ``"K:N"`` pattern of a row."""
    if row["pattern"] == "unstructured":
        return f"{100 * row['sparsity']:.0f}% unstr."
    return row["pattern"]


def table(rows: list[dict]) -> str:
    """Mean +- std over seeds of the final accuracy per setting (pruned when ``steps = 0``)."""
    lines = [f"{'model':13s} {'method':9s} {'target':12s} {'tome':>4s} {'refit':10s} "
             f"{'steps':>5s} {'seeds':>5s} {'accuracy':>17s} {'error after':>11s}"]  # fmt: skip
    for (model, method, target, tome, mode, budget, steps), rs in group_rows(rows).items():
        acc = np.array([r["acc_distilled"] for r in rs])
        err = [r["error_after"] for r in rs if r.get("error_after") is not None]
        name = method if budget is None else f"{method}/{budget}"
        lines.append(f"{model:13s} {name:9s} {target:12s} {tome:4d} {mode:10s} {steps:5d} "
                     f"{len(rs):5d} {acc.mean():.4f} +- {acc.std():.4f} "
                     f"{np.mean(err) if err else float('nan'):11.4f}")  # fmt: skip
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    """Per model, steps and ToMe: a Markdown table of test accuracy in percent, mean +- std
    over seeds, one row per method and budget, one column per (target, reconstruction)."""
    out = []
    groups = group_rows(rows)
    blocks = dict.fromkeys((k[0], k[6], k[3]) for k in groups)
    for model, steps, tome in blocks:
        keys = [k for k in groups if (k[0], k[6], k[3]) == (model, steps, tome)]
        cols = list(dict.fromkeys((k[2], k[4]) for k in keys))
        names = list(dict.fromkeys((k[1], k[5]) for k in keys))
        out += [f"{model}, {steps} distillation steps, ToMe r={tome} (test accuracy %, mean +- "
                "std over seeds (seeds))", "", "| method | " + " | ".join(f"{t} {m}" for t, m in cols)
                + " |", "| --- |" + " --- |" * len(cols)]  # fmt: skip
        for method, budget in names:
            cells = []
            for target, mode in cols:
                rs = groups.get((model, method, target, tome, mode, budget, steps))
                acc = 100 * np.array([r["acc_distilled"] for r in rs]) if rs else None
                cells.append("-" if acc is None
                             else f"{acc.mean():.2f} +- {acc.std():.2f} ({len(acc)})")  # fmt: skip
            name = method if budget is None else f"{method} ({budget})"
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def verdict(rows: list[dict]) -> str:
    """Per (model, target, ToMe, steps): the best MP-guided method with a refit against the
    best baseline without one and the best baseline with one.

    "Best" is the highest mean over seeds; MP-guided = seb, ser, cast; baselines = magnitude,
    wanda, sparsegpt, ria. Differences are in points of accuracy (the ratio of this bench).
    """
    best: dict[tuple, dict[str, tuple[float, str]]] = defaultdict(dict)
    for (model, method, target, tome, mode, _, steps), rs in group_rows(rows).items():
        if method in MP_GUIDED and mode != "off":
            side = "mp"
        elif method in BASELINES:
            side = "base_off" if mode == "off" else "base_refit"
        else:
            continue
        acc = float(np.mean([r["acc_distilled"] for r in rs]))
        slot = best[model, target, tome, steps]
        if side not in slot or acc > slot[side][0]:
            slot[side] = (acc, f"{method} ({mode})")
    lines = []
    for (model, target, tome, steps), slot in best.items():
        if "mp" not in slot:
            continue
        a_mp, mp = slot["mp"]
        text = f"{model} {target} tome={tome} steps={steps}: MP-guided {mp} {a_mp:.4f}"
        for side, what in (("base_off", "baseline one-shot"), ("base_refit", "baseline + refit")):
            if side in slot:
                acc, name = slot[side]
                text += f"; {what} {name} {acc:.4f} ({100 * (a_mp - acc):+.2f} pp)"
        lines.append(text)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mpjax bench quality``.

    Raises:
      ValueError: for a bad option (named).
    """
    args = build_parser().parse_args(argv)
    grid = grid_from_args(args)
    store = compare.RowStore(args.json)
    if not args.print_only:
        compare.run_grid(grid, store, say=lambda text: print(text, flush=True))
    wanted = {m for m in grid.models}
    rows = [r for r in store.rows if r["model"] in wanted]
    print(markdown(rows) if args.markdown else table(rows))
    print(verdict(rows))
    if args.json:
        print(f"rows: {args.json}")
    return 0
