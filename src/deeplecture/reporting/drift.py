"""Pinned metrics: compare a run's metrics files with the committed ones, within a tolerance.

    deeplecture-drift check   --pinned reports/pinned/smoke-jpeg.json --metrics metrics \
        [--spread reports/sweeps/smoke-jpeg-seeds.json]
    deeplecture-drift pin     --pinned reports/pinned/smoke-jpeg.json --metrics metrics
    deeplecture-drift summary --pinned reports/pinned/smoke-sample.json >> "$GITHUB_STEP_SUMMARY"

`check` exits 1 and prints a table of what moved when any metric drifted past its tolerance.
`summary` prints the same comparison as Markdown for a CI job summary, and exits 0 whatever
moved (the `check` step is the gate); where this platform has no pin, it shows the run's values.

A pin holds one profile's numbers (`profile`, from the runs' provenance files): metrics of another
profile are refused, never compared: smoke numbers beside full-profile ones mean nothing.

Pins are kept per platform: a seeded smoke run is bit-for-bit repeatable on one kind of CPU, but
another instruction set takes other kernels (oneDNN picks AVX-512 or AVX2 code, each rounding in
its own order), and after two epochs on 1,800 images that moves accuracy by several points. So a
run is compared with the pin of its own platform; a platform with no pin yet is reported as such,
with the command that adds it, never compared with another's numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from deeplecture.atomic import write_json
from deeplecture.project import git_commit, project_root

# Absolute tolerances where no spread is measured. The smoke runs are seeded and deterministic on
# one platform; the margin absorbs float rounding between machines of one platform, not a change
# in what the code computes.
DEFAULT_TOLERANCE = {"test_accuracy": 0.02, "test_loss": 0.05}
# With a seed sweep of the pin's profile (`--spread reports/sweeps/<name>.json`), a model's
# tolerance is this many sample standard deviations of its metric across the sweep's seeds: a
# change the size of seed noise passes, one beyond it (about 5 % of seeds at 2 sigma) is flagged.
SPREAD_SIGMAS = 2.0
SPREAD_FLOOR = 0.001  # a sweep whose seeds agree exactly must not make every rounding a drift
# CPU features that select other float kernels, most capable first (Linux /proc/cpuinfo names).
_KERNEL_ISAS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")


def platform_key(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The platform a pin holds for: the machine and its most capable float instruction set,
    e.g. `x86_64 avx512_bf16` or `x86_64 avx2`."""
    flags: set[str] = set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    isa = next((name for name in _KERNEL_ISAS if name in flags), "baseline")
    return f"{platform.machine()} {isa}"


def measured_on(plots_root: Path, models: list[str], commit: str | None) -> tuple[str, dict]:
    """The platform the run was measured on, and what the pin records of it (device, backend,
    versions, commit), from its provenance files. A GPU run's platform is its device and backend
    (`NVIDIA H200 jax`), wherever it is checked; a CPU run's is this machine's `platform_key`,
    as the provenance names no instruction set. A `ValueError` if the models ran on several."""
    stated = {}
    for model in models:
        path = plots_root / "provenance" / f"{model}.json"
        stated[model] = json.loads(path.read_text()) if path.is_file() else {}
    devices = {(p.get("device", ""), p.get("backend", "")) for p in stated.values()}
    if len(devices) > 1:
        shown = ", ".join(sorted(f"{d or '?'} ({b or '?'})" for d, b in devices))
        raise ValueError(f"the metrics mix devices ({shown}): pin or check one platform's run")
    device, backend = devices.pop() if devices else ("", "")
    on_gpu = bool(device) and not device.startswith("CPU")
    key = f"{device} {backend}" if on_gpu else platform_key()
    versions: dict[str, str] = {}
    for provenance in stated.values():  # a model that states none (older runs) adds none
        versions.update(provenance.get("versions", {}))
    record = {"device": device or None, "backend": backend or None, "versions": versions}
    return key, {**record, "commit": commit}


@dataclass(frozen=True)
class Drift:
    model: str
    metric: str
    pinned: float | None
    current: float | None
    tolerance: float
    basis: str = "fixed"  # where the tolerance comes from: fixed, or the sweep and its n

    @property
    def delta(self) -> float | None:
        if self.pinned is None or self.current is None:
            return None
        return self.current - self.pinned

    @property
    def moved(self) -> bool:
        return self.delta is None or abs(self.delta) > self.tolerance


def read_current(metrics_root: Path, metrics: list[str]) -> dict[str, dict[str, float]]:
    """`{"cifar10/cnn74": {"test_accuracy": ..., ...}, ...}` from every model metrics file."""
    current = {}
    for path in sorted(metrics_root.glob("*/*.json")):
        if path.parent.name == "foundations":
            continue
        values = read_json(path)
        missing = [key for key in metrics if not isinstance(values, dict) or key not in values]
        if missing:  # the pin compares these: a metrics file without them is not comparable
            raise ValueError(f"{path}: no {', '.join(missing)} in this metrics file")
        current[f"{path.parent.name}/{path.stem}"] = {key: values[key] for key in metrics}
    return current


class ProfileMismatch(ValueError):
    """The metrics were measured in another profile than the pin's."""


def read_profiles(plots_root: Path, models: list[str]) -> dict[str, str]:
    """The profile each model was measured in, from plots/provenance/<model>.json."""
    profiles = {}
    for model in models:
        path = plots_root / "provenance" / f"{model}.json"
        profiles[model] = json.loads(path.read_text())["profile"] if path.is_file() else "unknown"
    return profiles


def check_profile(expected: str | None, profiles: dict[str, str], pinned: Path) -> str:
    """The one profile of the run; a `ProfileMismatch` naming the model that is not it."""
    for model, profile in sorted(profiles.items()):
        if expected and profile != expected:
            raise ProfileMismatch(
                f"metrics of {model} were measured in the {profile} profile, {pinned} pins the "
                f"{expected} profile: compare a run of the same profile"
            )
    found = set(profiles.values())
    if len(found) > 1:
        raise ProfileMismatch(f"the metrics mix profiles ({', '.join(sorted(found))})")
    return found.pop() if found else "unknown"


def spread_tolerances(path: Path, profile: str | None) -> dict[str, dict[str, tuple[float, str]]]:
    """`{"cifar10/cnn74": {"test_accuracy": (tolerance, basis), ...}}` from a collected seed
    sweep, for each model it ran with n > 1; a `ProfileMismatch` if it ran another profile."""
    from deeplecture.sweeps.stats import spread

    document = read_json(path)
    if not isinstance(document, dict) or "runs" not in document:
        raise ValueError(f"{path}: not a sweep collected by deeplecture-sweep (no runs)")
    runs = document["runs"]
    profiles = {run.get("profile") for run in runs}
    if profile and profiles != {profile}:
        shown = ", ".join(sorted(str(p) for p in profiles))
        raise ProfileMismatch(
            f"{path} measured the {shown} profile, the pin holds the {profile} profile: "
            "its spread says nothing about these runs"
        )
    tolerances: dict[str, dict[str, tuple[float, str]]] = {}
    for model in sorted({f"{run['dataset']}/{run['variant']}" for run in runs}):
        model_runs = [run for run in runs if f"{run['dataset']}/{run['variant']}" == model]
        if len(model_runs) < 2:
            continue  # one seed: no spread, the fixed tolerance stays
        for metric in DEFAULT_TOLERANCE:
            std = spread([run[metric] for run in model_runs]).std or 0.0
            tolerance = max(SPREAD_SIGMAS * std, SPREAD_FLOOR)
            basis = f"{SPREAD_SIGMAS:g}σ of {path.stem}, n={len(model_runs)}"
            tolerances.setdefault(model, {})[metric] = (tolerance, basis)
    return tolerances


def compare(
    pinned: dict,
    current: dict[str, dict[str, float]],
    measured: dict[str, dict[str, tuple[float, str]]] | None = None,
) -> list[Drift]:
    """One row per pinned model and metric (a model missing on either side counts as moved);
    `measured` (from `spread_tolerances`) replaces the fixed tolerance where it has one."""
    rows = []
    for model in sorted(set(pinned["models"]) | set(current)):
        for metric, fixed in pinned["tolerance"].items():
            tolerance, basis = (measured or {}).get(model, {}).get(metric, (fixed, "fixed"))
            rows.append(
                Drift(
                    model,
                    metric,
                    pinned["models"].get(model, {}).get(metric),
                    current.get(model, {}).get(metric),
                    tolerance,
                    basis,
                )
            )
    return rows


def format_table(rows: list[Drift]) -> str:
    lines = [
        "| model | metric | pinned | current | change | tolerance | from | |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:

        def show(value: float | None) -> str:
            return "missing" if value is None else f"{value:.4f}"

        change = "n/a" if row.delta is None else f"{row.delta:+.4f}"
        lines.append(
            f"| {row.model} | {row.metric} | {show(row.pinned)} | {show(row.current)} | {change} "
            f"| ±{row.tolerance:.4g} | {row.basis} | {'MOVED' if row.moved else 'ok'} |"
        )
    return "\n".join(lines)


class _NotFinite(ValueError):
    """A NaN or infinite number, which Python's json reads and JSON itself does not allow."""


def _refuse_not_finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


def read_json(path: Path) -> object:
    """The JSON document at `path`, strictly: a one-line `ValueError` naming the file for text
    that is not JSON (truncated, not UTF-8), NaN or Infinity, a number beyond float range, or
    nesting deeper than the parser goes. Missing or unreadable files raise `OSError`."""
    data = path.read_bytes()
    try:
        return json.loads(data, parse_constant=_refuse_not_finite, parse_float=_refuse_not_finite)
    except _NotFinite as error:
        raise ValueError(f"{path}: holds the number {error}, which JSON does not allow") from None
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno} column {error.colno}; "
            "truncated?)"
        ) from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 JSON text") from None
    except RecursionError:
        raise ValueError(f"{path}: nested too deeply to be a metrics document") from None


def new_pin() -> dict:
    """What `pin` starts from where no pinned file exists yet."""
    return {"tolerance": dict(DEFAULT_TOLERANCE), "platforms": {}}


def read_pinned(path: Path, action: str) -> dict:
    """The pinned file at `path`, checked by `check_pinned`. Missing, it is a new pin for `pin`
    and a one-line `ValueError` for `check` and `summary`, which have nothing to compare with."""
    if not path.exists():
        if action == "pin":
            return new_pin()
        raise ValueError(
            f"no pinned file at {path}: pin a run first (deeplecture-drift pin --pinned {path})"
        )
    document = read_json(path)
    check_pinned(document, path)
    return document  # type: ignore[return-value]  # check_pinned made sure it is a dict


def check_pinned(document: object, path: Path) -> None:
    """A one-line `ValueError` naming the file and the first key whose value has the wrong type:
    a pin is `{"tolerance": {metric: number >= 0, ...}, "platforms": {platform: {"models":
    {model: {metric: number, ...}}, ...}}, "profile": name}` (profile optional; keys it does not
    name are kept as they are, so a pin may record more of its runs)."""

    def refuse(where: str, expected: str, found: object) -> ValueError:
        return ValueError(f"{path}: {where} should be {expected}, got {_shown(found)}")

    if not isinstance(document, dict):
        raise refuse("the document", "an object with tolerance and platforms", document)
    if "profile" in document and not isinstance(document["profile"], str):
        raise refuse("profile", "a profile name", document["profile"])
    tolerance = document.get("tolerance")
    if not (isinstance(tolerance, dict) and tolerance):
        raise refuse("tolerance", "an object of metric: tolerance", tolerance)
    for metric, value in tolerance.items():
        if not (_is_number(value) and value >= 0):
            raise refuse(f"tolerance.{metric}", "a number of at least 0", value)
    platforms = document.get("platforms")
    if not isinstance(platforms, dict):
        raise refuse("platforms", "an object of platform: pin", platforms)
    for name, pin in platforms.items():
        models = pin.get("models") if isinstance(pin, dict) else None
        if not isinstance(models, dict):
            raise refuse(f"platforms[{name!r}].models", "an object of model: metrics", models)
        for model, values in models.items():
            where = f"platforms[{name!r}].models[{model!r}]"
            if not isinstance(values, dict):
                raise refuse(where, "an object of metric: number", values)
            for metric, value in values.items():
                if not _is_number(value):
                    raise refuse(f"{where}.{metric}", "a number", value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _shown(value: object, limit: int = 60) -> str:
    """`value` as JSON, cut to `limit` characters: enough to recognize it in one line."""
    text = "missing" if value is None else json.dumps(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare metrics with pinned ones, or pin them.")
    parser.add_argument("action", choices=["check", "pin", "summary"])
    parser.add_argument("--pinned", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--plots", type=Path, help="plots/ (provenance): default beside metrics/")
    parser.add_argument(
        "--spread",
        type=Path,
        help="a collected seed sweep (reports/sweeps/<name>.json) of the pin's profile: "
        f"tolerances become {SPREAD_SIGMAS:g} standard deviations of its seeds",
    )
    parser.add_argument(
        "--commit",
        help="pin: the code version the metrics were measured at (default: this checkout's)",
    )
    args = parser.parse_args(argv)

    try:
        document = read_pinned(args.pinned, args.action)
        current = read_current(args.metrics, list(document["tolerance"]))
        plots = args.plots or args.metrics.parent / "plots"
        profiles = read_profiles(plots, list(current))
        here, measured_with = measured_on(
            plots, list(current), args.commit or git_commit(project_root())
        )
        profile = check_profile(document.get("profile"), profiles, args.pinned)
        measured = spread_tolerances(args.spread, document.get("profile")) if args.spread else {}
    except (ProfileMismatch, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.action == "pin":
        document["profile"] = profile
        # other platforms' pins are kept
        document["platforms"][here] = {"models": current, "measured_on": measured_with}
        write_json(args.pinned, document)
        print(f"pinned {len(current)} models of the {profile} profile for {here} in {args.pinned}")
        return 0
    if args.action == "summary":
        print(_summary(document, current, here, profile, args.pinned, measured))
        return 0
    if here not in document["platforms"]:
        known = ", ".join(sorted(document["platforms"])) or "none"
        print(
            f"error: {args.pinned} has no pinned metrics for this platform ({here}; pinned: "
            f"{known}): run the same profile here, then `deeplecture-drift pin --pinned "
            f"{args.pinned}` to add them",
            file=sys.stderr,
        )
        return 1
    pinned = {"tolerance": document["tolerance"], **document["platforms"][here]}
    rows = compare(pinned, current, measured)
    print(f"pinned metrics of {here}:")
    print(format_table(rows))
    moved = [row for row in rows if row.moved]
    if moved:
        print(f"\n{len(moved)} metric(s) moved beyond tolerance of {args.pinned}", file=sys.stderr)
        return 1
    print(f"\nall {len(rows)} metrics within tolerance of {args.pinned}")
    return 0


def _summary(
    document: dict,
    current: dict[str, dict[str, float]],
    here: str,
    profile: str,
    pinned: Path,
    measured: dict[str, dict[str, tuple[float, str]]],
) -> str:
    """Markdown for a CI job summary: this run beside its platform's pin, or alone."""
    lines = [f"## {profile.capitalize()} metrics on {here}", ""]
    if here in document["platforms"]:
        pin = {"tolerance": document["tolerance"], **document["platforms"][here]}
        rows = compare(pin, current, measured)
        moved = sum(row.moved for row in rows)
        lines += [f"Compared with `{pinned}` ({moved} of {len(rows)} moved).", ""]
        return "\n".join([*lines, format_table(rows)])
    lines += [
        f"`{pinned}` has no pin for this platform, so nothing is compared: another instruction "
        f"set rounds otherwise. To pin: `deeplecture-drift pin --pinned {pinned}`.",
        "",
        "| model | " + " | ".join(document["tolerance"]) + " |",
        "|---|" + "---:|" * len(document["tolerance"]),
    ]
    for model, values in sorted(current.items()):
        lines.append(f"| {model} | " + " | ".join(f"{v:.4f}" for v in values.values()) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
