"""Config files → a list of runs.

A config file has section headers (`DataParams`, `TrainParams`, `ModelParams`, optionally in
brackets) followed by `key=value` lines whose values are Python literals; `#` starts a comment.
A list value is a sweep: the file expands to the cartesian product of all its lists.
`--config=PREFIX` reads `PREFIX.txt` and every `PREFIX-*.txt`.

Every mistake raises `UserError` naming the file, line and fix. Torch-free on purpose.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import itertools
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.data_params import DataParams
from data.task_registry import settings_owner
from model.model_params import ModelParams
from core.errors import UserError
from core.params_base import coerce, field_choices, field_types, type_name, value_matches
from train.train_params import TrainParams
from train.validate import SECTIONS, field_problem, run_problem

MAX_RUNS = 10_000
# The seed README's names for keys the project spells differently: (section, seed name) -> our name.
SEED_ALIASES: dict[tuple[str, str], str] = {("DataParams", "dataset_name"): "task"}


@dataclass
class RunConfig:
    """One run: the three parameter groups plus where they came from."""

    config_name: str
    data: DataParams
    train: TrainParams
    model: ModelParams
    varying: dict[str, Any] = field(default_factory=dict)  # the swept keys and this run's values
    source: str = ""

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {"data": dataclasses.asdict(self.data), "train": dataclasses.asdict(self.train), "model": dataclasses.asdict(self.model)}

    def describe(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.varying.items()) or "(no swept values)"


def find_config_files(prefix: str, configs_dir: Path) -> list[Path]:
    if not prefix or "/" in prefix or "\\" in prefix:
        raise UserError(f"--config={prefix!r} must be a config name in {configs_dir} (without .txt)")
    if any(c in prefix for c in "*?[]"):
        raise UserError(f"--config={prefix!r} contains a wildcard; give one config name (NAME also runs every NAME-*.txt)")
    files = []
    exact = configs_dir / f"{prefix}.txt"
    if exact.is_file():
        files.append(exact)
    files += sorted(p for p in configs_dir.glob(f"{prefix}-*.txt") if p.is_file())
    if not files:
        existing = sorted(p.stem for p in configs_dir.glob("*.txt"))
        close = difflib.get_close_matches(prefix, existing, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UserError(f"no config {prefix}.txt or {prefix}-*.txt in {configs_dir}; {hint}existing configs: {', '.join(existing) or 'none'}")
    return files


def _section_header(line: str) -> str | None:
    name = line.strip().strip("[]:").strip()
    return name if name in SECTIONS else None


def _closest_keys(key: str, section: str) -> str:
    names = list(field_types(SECTIONS[section]))
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    return f"closest valid names: {', '.join(close)}" if close else f"valid names: {', '.join(names)}"


def _parse_value(raw: str, tp: Any, where: str, key: str) -> Any:
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        if value_matches("", tp) and raw and all(c.isalnum() or c in "-_./" for c in raw):
            return raw  # a bare word for a string field, e.g. task=copy
        raise UserError(f"{where}: value {raw!r} for {key} is not a Python literal; expected {type_name(tp)} (quote strings: {key}=\"...\")") from None


def parse_config_file(path: Path) -> dict[str, dict[str, tuple[list[Any], bool]]]:
    """section → key → (candidate values, was_a_list), validated against the dataclasses."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (some Windows editors) is not part of the first line
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file; config files hold 'key=value' lines") from None
    types = {s: field_types(cls) for s, cls in SECTIONS.items()}
    out: dict[str, dict[str, tuple[list[Any], bool]]] = {s: {} for s in SECTIONS}
    section: str | None = None
    for lineno, full in enumerate(text.splitlines(), 1):
        where = f"{path}:{lineno}"
        line = full.split("#", 1)[0].strip() if not _has_quoted_hash(full) else _strip_comment(full)
        if not line:
            continue
        if "=" not in line:
            section = _header(line, where)
            continue
        key, raw = (s.strip() for s in line.split("=", 1))
        if section is not None:
            key = _alias(key, section, where, out[section])
        section = _check_key(key, section, types, out, where)
        out[section][key] = _parse_values(section, key, raw, types[section][key], where)
    return out


def _header(line: str, where: str) -> str:
    header = _section_header(line)
    if header is None:
        close = difflib.get_close_matches(line.strip("[]: "), list(SECTIONS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UserError(f"{where}: {line[:60]!r} is neither 'key=value' nor a section header{hint}; sections: {', '.join(SECTIONS)}")
    return header


def _check_key(key: str, section: str | None, types: dict[str, dict[str, Any]], seen: dict[str, dict], where: str) -> str:
    """The section `key` may be set in here, or a UserError naming the fix."""
    if section is None:
        raise UserError(f"{where}: {key}= comes before any section header; put it under DataParams, TrainParams or ModelParams")
    if key not in types[section]:
        owner = next((s for s in SECTIONS if key in types[s]), None)
        if owner:
            raise UserError(f"{where}: {key} belongs in section {owner}, not {section}; move the line under {owner}")
        removed = getattr(sys.modules.get(SECTIONS[section].__module__), "REMOVED", {}).get(key)
        if removed:
            raise UserError(f"{where}: {removed}; delete the line")
        raise UserError(f"{where}: unknown key {key!r} in section {section}; {_closest_keys(key, section)}")
    if key in seen[section]:
        raise UserError(f"{where}: {key} is set twice in section {section}; keep one line (use a list to sweep)")
    return section


def _parse_values(section: str, key: str, raw: str, tp: Any, where: str) -> tuple[list[Any], bool]:
    """(the values of `key=raw`, whether it is a sweep), each checked for type, choices and range."""
    value = _parse_value(raw, tp, where, key)
    is_sweep = isinstance(value, list) and not value_matches(value, tp)
    values = value if is_sweep else [value]
    if is_sweep and not values:
        raise UserError(f"{where}: {key}=[] is an empty list, so this config expands to no runs; give at least one value")
    for v in values:
        problem = value_problem(section, key, v)
        if problem:
            raise UserError(f"{where}: {problem}")
    return [coerce(v, tp) for v in values], is_sweep


def _alias(key: str, section: str, where: str, seen: dict[str, Any]) -> str:
    """Map a seed-README key (e.g. `dataset_name`) to ours; in the wrong section, name the right one."""
    ours = SEED_ALIASES.get((section, key))
    if ours is not None:
        if ours in seen:
            raise UserError(f"{where}: {key} is the seed's name for {ours}, which is already set in section {section}; keep one of the two lines")
        return ours
    home = next((s for (s, k) in SEED_ALIASES if k == key), None)
    if home is not None:
        raise UserError(f"{where}: {key} (our name: {SEED_ALIASES[(home, key)]}) belongs in section {home}, not {section}; move the line under {home}")
    return key


def value_problem(section: str, key: str, v: Any) -> str | None:
    """Why `v` can't be the value of `section.key` (type, allowed choices, range), or None."""
    tp = field_types(SECTIONS[section])[key]
    if not value_matches(v, tp):
        return f"{key}={v!r} has type {type(v).__name__}; expected {type_name(tp)}"
    choices = field_choices(SECTIONS[section])[key]
    if choices and v not in choices:
        if hasattr(choices, "explain"):  # a registry (model/registry.py): closest names, how to add one
            return f"{key}={v!r}: {choices.explain(key, v)}"
        return f"{key}={v!r} is not one of {', '.join(map(repr, choices))}"
    # an int given for a float field is judged (and described) as a number
    as_float = isinstance(v, int) and not isinstance(v, bool) and value_matches(0.5, tp) and int not in (typing.get_args(tp) or (tp,))
    return field_problem(section, key, float(v) if as_float else coerce(v, tp))


def check_run_values(data: Any, train: Any, model: Any, where: str, for_training: bool = True) -> None:
    """The parser's checks on parameters read back from a file (run_state.json, params.json).

    `for_training=False` (loading a saved model) skips the training-memory estimate.
    """
    for section, params in zip(SECTIONS, (data, train, model)):
        for f in dataclasses.fields(params):
            try:
                problem = value_problem(section, f.name, getattr(params, f.name))
            except TypeError as e:  # e.g. comparing a list with a number
                problem = f"{f.name}={getattr(params, f.name)!r}: {e}"
            if problem:
                raise UserError(f"{where}: {section}.{problem}; the file was altered or written by other code")
    try:
        problem = run_problem(data, train, model, check_memory=for_training)
    except (TypeError, ValueError) as e:
        problem = str(e)
    if problem:
        raise UserError(f"{where}: {problem}; the file was altered or written by other code")


def _has_quoted_hash(line: str) -> bool:
    return "#" in line and ("'" in line or '"' in line)


def _strip_comment(line: str) -> str:
    """Drop a trailing # comment that is not inside quotes."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#":
            return line[:i].strip()
    return line.strip()


def expand_config_file(path: Path, task: str | None = None) -> list[RunConfig]:
    parsed = parse_config_file(path)
    if not any(parsed.values()):
        raise UserError(f"{path}: no settings (empty, or only comments); write key=value lines under DataParams/TrainParams/ModelParams, e.g. task=\"copy\"")
    axes = [(s, k, vals) for s, keys in parsed.items() for k, (vals, _) in keys.items()]
    swept = [(s, k) for s, keys in parsed.items() for k, (vals, is_sweep) in keys.items() if is_sweep]
    n_runs = 1
    for _, _, vals in axes:
        n_runs *= len(vals)
        if n_runs > MAX_RUNS:
            raise UserError(f"{path}: the lists expand to more than {MAX_RUNS} runs; sweep fewer values")
    runs = []
    for combo in itertools.product(*[vals for _, _, vals in axes]):
        groups: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
        for (s, k, _), v in zip(axes, combo):
            groups[s][k] = v
        if task is not None:
            groups["DataParams"]["task"] = task
        runs.append(_checked_run(path, groups, {k: groups[s][k] for s, k in swept}))
    return runs


def _checked_run(path: Path, groups: dict[str, dict[str, Any]], varying: dict[str, Any]) -> RunConfig:
    rc = RunConfig(
        config_name=path.stem,
        data=DataParams(**groups["DataParams"]),
        train=TrainParams(**groups["TrainParams"]),
        model=ModelParams(**groups["ModelParams"]),
        varying=varying,
        source=str(path),
    )
    problem = run_problem(rc.data, rc.train, rc.model)
    if problem:
        raise UserError(f"{path}: {problem}" + (f" (in the run {rc.describe()})" if varying else ""))
    return rc


def load_runs(prefix: str, configs_dir: Path, task: str | None = None) -> list[RunConfig]:
    """All runs of `--config=prefix`, in file order then sweep order."""
    runs = [r for p in find_config_files(prefix, configs_dir) for r in expand_config_file(p, task)]
    if not runs:
        raise UserError(f"--config={prefix} expands to no runs")
    return runs


def settings_help(width: int = 100) -> str:
    """Every config key by section: type, default, choices, range and help, read from the dataclasses."""
    import textwrap

    owner = settings_owner()
    lines = ["config keys (key=value lines under each section header of configs/NAME.txt):"]
    for section, cls in SECTIONS.items():
        lines.append(f"\n{section}")
        heading = None
        types, all_choices = field_types(cls), field_choices(cls)
        for f in dataclasses.fields(cls):
            if owner.get(f.name, section) != heading and f.name in owner:
                heading = owner[f.name]
                lines.append(f"  -- task file {heading.replace('.', '/')}.py --")
            tp, choices, rng = types[f.name], all_choices[f.name], f.metadata.get("range")
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            facts = [type_name(tp), f"default {default!r}"]
            if choices:
                facts.append("one of " + ", ".join(map(repr, choices)))
            if rng:
                facts.append(rng.describe("").strip())
            text = f"{f.name} ({'; '.join(facts)}): {f.metadata.get('help', '')}"
            lines.append(textwrap.fill(text, width, initial_indent="  ", subsequent_indent="      "))
    return "\n".join(lines)
