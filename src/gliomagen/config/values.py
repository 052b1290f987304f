"""Typed assignment of keys (``--set``, YAML), dict round trips, YAML files, resolution."""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from gliomagen.config.presets import preset
from gliomagen.config.schema import REMOVED_KEYS, SECTIONS, Config
from gliomagen.errors import GliomagenError
from gliomagen.io.atomic import write_text


# -- typed assignment -----------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to type ``tp`` or raise GliomagenError naming ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = GliomagenError(f"{key}={value!r}: expected {_type_name(tp)}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except GliomagenError:
                pass
        raise bad
    if origin is Literal:
        if value not in args:
            raise bad
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        return [_coerce(v, args[0], key) for v in value]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise bad
        return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise bad


def _unknown(kind: str, name: str, known: list[str]) -> GliomagenError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
    return GliomagenError(f"unknown {kind} {name!r}{hint}")


def set_value(cfg: Config, key: str, value: Any) -> None:
    """Set ``section.name`` on ``cfg`` after type checking (in place)."""
    parts = key.split(".")
    if parts == ["preset"]:
        cfg.preset = _coerce(value, str, key)
        return
    if len(parts) != 2:
        raise GliomagenError(f"config key {key!r}: expected section.name, e.g. train.lr_g")
    if key in REMOVED_KEYS:
        off, what = REMOVED_KEYS[key]
        if value == off:  # an older configuration or checkpoint with the option off
            return
        raise GliomagenError(
            f"{key}={value!r}: this option ({what}) was removed, as it was measured not to help; "
            f"delete {key} from the configuration"
        )
    section, name = parts
    if section not in SECTIONS:
        raise _unknown("config section", section, list(SECTIONS))
    obj = getattr(cfg, section)
    hints = typing.get_type_hints(type(obj))
    if name not in hints:
        raise _unknown(f"config key in {section}:", name, [f.name for f in dataclasses.fields(obj)])
    setattr(obj, name, _coerce(value, hints[name], key))


def apply_overrides(cfg: Config, items: list[str]) -> Config:
    """Apply ``--set section.key=value`` strings (values parsed as YAML scalars/lists)."""
    for item in items:
        if "=" not in item:
            raise GliomagenError(
                f"--set {item!r}: expected section.key=value, e.g. train.lr_g=0.001"
            )
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        set_value(cfg, key.strip(), value)
    return cfg


def merge_dict(cfg: Config, data: dict[str, Any], source: str = "config") -> Config:
    """Apply a nested dict ``{section: {key: value}}`` (e.g. from YAML) onto ``cfg``."""
    if not isinstance(data, dict):
        raise GliomagenError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    for section, values in data.items():
        if section == "preset":
            continue
        if section not in SECTIONS:
            raise GliomagenError(
                f"{source}: {_unknown('config section', str(section), list(SECTIONS))}"
            )
        if not isinstance(values, dict):
            raise GliomagenError(f"{source}: section {section!r} must be a mapping")
        for key, value in values.items():
            try:
                set_value(cfg, f"{section}.{key}", value)
            except GliomagenError as exc:
                raise GliomagenError(f"{source}: {exc}") from None
    return cfg


def to_dict(cfg: Config) -> dict[str, Any]:
    """A plain, YAML/``weights_only``-safe dict (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    out: dict[str, Any] = {"preset": cfg.preset}
    for s in SECTIONS:
        out[s] = {k: plain(v) for k, v in dataclasses.asdict(getattr(cfg, s)).items()}
    return out


def from_dict(data: dict[str, Any], source: str = "config") -> Config:
    """Rebuild a Config from :func:`to_dict` output (defaults fill missing keys)."""
    cfg = Config(preset=str(data.get("preset", "custom")))
    return merge_dict(cfg, data, source)


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file into a dict; GliomagenError for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise GliomagenError(f"--config {p}: file not found")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "parse error"
        raise GliomagenError(f"{p}: not valid YAML ({first})") from None
    if not isinstance(data, dict):
        raise GliomagenError(
            f"{p}: expected a mapping of sections (model, loss, augment, train, data)"
        )
    return data


def dump_yaml(cfg: Config, path: str | os.PathLike[str]) -> Path:
    """Write the configuration as YAML atomically (:func:`gliomagen.io.atomic.write_text`)."""
    return write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def resolve_config(
    preset_name: str | None = None,
    yaml_path: str | os.PathLike[str] | None = None,
    overrides: list[str] | None = None,
) -> Config:
    """Preset -> YAML file -> ``--set`` overrides, validated.

    The base preset is ``preset_name``, else the YAML file's ``preset:`` key, else ``default``.
    """
    data = load_yaml(yaml_path) if yaml_path is not None else {}
    base = preset_name or data.get("preset") or "default"
    cfg = preset(str(base))
    if data:
        merge_dict(cfg, data, str(yaml_path))
    apply_overrides(cfg, list(overrides or []))
    return cfg.validate()

