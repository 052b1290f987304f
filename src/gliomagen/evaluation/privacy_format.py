"""A short plain-text table of a privacy report (:func:`gliomagen.evaluation.privacy.privacy_report`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_FLAGGED_LINES = 10


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def _closest_lines(report: dict[str, Any]) -> list[str]:
    p = report["percentile"]
    n = report["n"]
    lines = [
        f"Privacy: distance of each case to its closest training case "
        f"({n['train']} training, {n['heldout']} held-out real, {n['synthetic']} synthetic cases)",
        f"  p{p:g} = {p:g}th percentile; flagged = synthetic cases closer than the held-out p{p:g}; "
        f"pass = synthetic p{p:g} >= held-out p{p:g}",
        f"  {'space':<12} {'synthetic p' + format(p, 'g'):>14} {'held-out p' + format(p, 'g'):>14}"
        f" {'flagged':>14}  pass  (95% interval of the difference)",
    ]
    for name, s in report["spaces"].items():
        flagged = f"{s['n_flagged']}/{len(s['synthetic'])} ({100 * s['fraction_flagged']:.0f}%)"
        low, high = s["difference_ci"]
        lines.append(
            f"  {name:<12} {s['synthetic_percentile']:>14.4g} {s['heldout_percentile']:>14.4g}"
            f" {flagged:>14}  {_yes(s['passes']):<4}  ([{low:.3g}, {high:.3g}]"
            + (": holds 0, chance)" if s["uncertain"] else ")")
        )
    lines.append(f"  (about {p:g}% of new cases are flagged by chance)")
    return lines


def _membership_lines(report: dict[str, Any]) -> list[str]:
    m = report["membership"]
    thr = m["threshold"]
    lines = [
        f"Membership inference: ROC AUC of telling {_members(m)} training cases from held-out real cases "
        f"(0.5 = cannot tell; pass <= {thr:g}; 95% bootstrap interval, {m['n_boot']} resamples)",
        f"  {'attack':<12} {'AUC':>6}  95% interval",
    ]
    for name, a in m["attacks"].items():
        lines.append(f"  {name:<12} {a['auc']:>6.3f}  [{a['ci'][0]:.3f}, {a['ci'][1]:.3f}]")
    verdict = f"  max {m['max_auc']:.3f} ({m['max_attack']}): pass {_yes(m['passes'])}"
    if m["uncertain"]:
        verdict += f"; its interval straddles {thr:g}: too few cases to be sure"
    lines.append(verdict)
    return lines


def _flagged_lines(report: dict[str, Any]) -> list[str]:
    """One line per flagged synthetic case and closest training case, with the spaces that flag it."""
    by_pair: dict[tuple[str, str], list[str]] = {}
    for name, s in report["spaces"].items():
        for r in s["flagged"]:
            by_pair.setdefault((r["id"], r["closest_train"]), []).append(
                f"{name} {r['distance']:.3g}"
            )
    if not by_pair:
        return ["No synthetic case is flagged."]
    pairs = sorted(by_pair, key=lambda k: (-len(by_pair[k]), k))  # flagged in most spaces first
    lines = [f"Flagged synthetic cases ({len(report['flagged_ids'])}): id -> closest training case"]
    for key in pairs[:MAX_FLAGGED_LINES]:
        lines.append(f"  {key[0]} -> {key[1]}  ({', '.join(by_pair[key])})")
    if len(pairs) > MAX_FLAGGED_LINES:
        lines.append(f"  ... and {len(pairs) - MAX_FLAGGED_LINES} more (see the report)")
    return lines


def format_privacy(report: dict[str, Any]) -> str:
    """A short plain-text table of a privacy report for the console.

    Args:
        report: the dict of :func:`gliomagen.evaluation.privacy.privacy_report`.

    Returns:
        The closest-training table per space, the membership AUC per attack with its interval,
        the verdicts and up to 10 flagged synthetic cases, one line each.
    """
    lines = _closest_lines(report) + _membership_lines(report) + _flagged_lines(report)
    lines.append(f"Privacy overall: pass {_yes(report['passes'])}")
    return "\n".join(lines)


def _members(m: Mapping[str, Any]) -> str:
    """How many training cases the attack scored (the same for every attack)."""
    a = next(iter(m["attacks"].values()), None)
    return f"{a['n_members']}" if a is not None and "n_members" in a else "the"
