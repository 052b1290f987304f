"""Starting a run from another run's weights (``gliomagen train ... --init CKPT|RUN``).

:func:`init_networks` loads a parent checkpoint's ``G``, ``G_ema`` and ``D`` (the encoder
travels with G) into a new run's freshly built networks; the optimisers, the step counters, the
latent prior and the table of training cases stay the new run's own. The conditions are matched by
name (:mod:`gliomagen.training.init_schema`) and the condition layers rebuilt so that, for the
codes both know, the networks compute what the parent computed:

- embedding rows (G's mapping, D's projection) are copied per category; a new category takes the
  row of a named one or the mean row; the 'unknown' slot is the parent's;
- a new continuous field gets zero weight; a new categorical field a zero block in G's projection
  (and a zero table in D), so that neither changes anything until trained;
- a kept continuous field's weights are re-expressed in the new store's standardisation;
- a dropped field's average contribution (its mean row) is folded into a bias (G) or into D's
  score layer; dropped categories lose their rows; D's auxiliary heads follow the same rules;
- D's label-consistency segmenter (``D.seg``, ``loss.seg_weight``) is copied when the parent has
  one; otherwise it starts fresh (and a parent's is dropped when this run has none);
- the equalised-learning-rate gains, which depend on a layer's input width, are accounted for.

Under spectral normalisation (``model.spectral_norm``) D's rebuilt layers are renormalised, so D
is only close to the parent's there. Every other tensor must have the parent's shape, and the
``model`` settings must be the parent's (except :data:`FREE_MODEL_KEYS`): anything else is one
``GliomagenError`` ``grid or widths differ from the parent (--init CKPT): ...``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from gliomagen.config import Config, from_dict, to_dict
from gliomagen.data.conditions import ConditionSchema
from gliomagen.data.nifti import sha256
from gliomagen.errors import GliomagenError
from gliomagen.io.checkpoint import load_checkpoint, resolve_checkpoint
from gliomagen.models.latent_prior import is_prior_buffer
from gliomagen.models.mapping import ConditionEmbedding
from gliomagen.training.init_schema import SchemaMatch, match_schemas

FREE_MODEL_KEYS = frozenset(
    {"latent_prior", "latent_prior_components", "d_dropout", "d_mask", "fused_modconv",
     "mbstd_group", "d_freeze_blocks"}
)  # fmt: skip
"""``model`` keys a run may set apart from its parent's: no weight's shape or meaning depends on
them (a changed ``mbstd_group`` of 0 shows up as a tensor of another shape)."""

NEEDED_KEYS = ("G", "D", "G_ema", "schema", "size", "n_modalities", "config")
D_CONDITION_PARTS = ("embed", "embed_cont", "aux_cat", "aux_cont")
PRIOR_NOTE = (
    "optimisers, step and latent prior start fresh; the table of training cases is the store's"
)


def check_init_args(init: Any, init_map: Mapping[str, Any] | None, resume: bool) -> None:
    """``--init`` is not for ``--resume``, and ``--init-map`` needs ``--init``."""
    if init is not None and resume:
        raise GliomagenError(
            "--init: not with --resume (a resumed run goes on from its own weights)"
        )
    if init_map and init is None:
        raise GliomagenError("--init-map: only with --init")


def init_networks(
    G: nn.Module,
    D: nn.Module,
    G_ema: nn.Module,
    schema_new: ConditionSchema,
    ckpt_path: str | os.PathLike[str],
    init_map: Mapping[str, Mapping[str, str]] | None = None,
    log: Callable[[str], None] | None = None,
    *,
    config: Config | None = None,
) -> dict[str, Any]:
    """Load a parent checkpoint's weights into a new run's networks (see the module docstring).

    Args:
        G, D, G_ema: the new run's networks, built for ``schema_new`` (changed in place).
        schema_new: the new run's conditions.
        ckpt_path: the parent: a checkpoint file or a run folder (its newest checkpoint).
        init_map: ``{field: {new category: parent category}}`` to start new categories from.
        log: called with each line saying what was kept, started new and dropped.
        config: the new run's configuration; its ``model`` settings are checked against the
            parent's (not checked when ``None``).

    Returns:
        The provenance record ``{"parent", "parent_sha256", "parent_step", "kept", "new",
        "dropped", "mapped"}`` (codes as ``field=category``, continuous fields by name).

    Raises:
        GliomagenError: an unreadable or missing checkpoint, a bad ``init_map``, conditions whose
            kind changed, or a grid, width or model setting that differs from the parent's.
    """
    path, ckpt = read_parent(ckpt_path, next(G.parameters()).device)
    where = f"grid or widths differ from the parent (--init {path})"
    _check_grid(ckpt, D, where)
    if config is not None:
        _check_model(ckpt, config, where, str(path))
    m = match_schemas(ConditionSchema.from_dict(ckpt["schema"]), schema_new, init_map)
    with torch.no_grad():
        for net, key in ((G, "G"), (G_ema, "G_ema")):
            net.load_state_dict(_generator_state(net, ckpt[key], m, where, key))
        D.load_state_dict(_discriminator_state(D, ckpt["D"], m, where))
    record: dict[str, Any] = {
        "parent": str(path.resolve()),
        "parent_sha256": sha256(path),
        "parent_step": int(ckpt.get("step", 0)),
        "kept": m.kept,
        "new": m.new,
        "dropped": m.dropped,
        "mapped": m.mapped,
    }
    for line in describe(record, m, getattr(G, "encoder", None) is not None):
        (log or (lambda _: None))(line)
    return record


def read_parent(
    ckpt_path: str | os.PathLike[str], device: torch.device | str = "cpu"
) -> tuple[Path, dict[str, Any]]:
    """``(file, checkpoint)`` of ``--init``; one line naming it when it is missing or not a
    training checkpoint."""
    try:
        path = resolve_checkpoint(ckpt_path)
        ckpt = load_checkpoint(path, map_location=device)
    except GliomagenError as exc:
        raise GliomagenError(f"--init {exc}") from None
    missing = [k for k in NEEDED_KEYS if k not in ckpt]
    if missing:
        why = (
            "a sampling-only `export generator` file; give the run's checkpoint"
            if "exported" in ckpt
            else f"it has no {missing[0]}"
        )
        raise GliomagenError(f"--init {path}: not a training checkpoint ({why})")
    return path, ckpt


def describe(record: Mapping[str, Any], m: SchemaMatch, encoder: bool) -> list[str]:
    """The log lines of an initialisation: the parent, then the kept, new and dropped codes."""
    nets = "G, G_ema, D" + (" (G with its encoder)" if encoder else "")
    lines = [
        f"initialised {nets} from {record['parent']} (step {record['parent_step']}, "
        f"sha256 {record['parent_sha256'][:12]}); {PRIOR_NOTE}"
    ]
    if m.kept:
        lines.append(f"--init kept: {', '.join(m.kept)}")
    if m.new:
        how = {code: f" (from {m.mapped[code]})" if code in m.mapped else
               (" (mean of the parent's rows)" if "=" in code else " (no effect until trained)")
               for code in m.new}  # fmt: skip
        lines.append(f"--init new: {', '.join(code + how[code] for code in m.new)}")
    if m.dropped:
        lines.append(f"--init dropped (not in the store): {', '.join(m.dropped)}")
    return lines


# -- checks ----------------------------------------------------------------------------------------
def _check_grid(ckpt: Mapping[str, Any], D: nn.Module, where: str) -> None:
    """The parent's grid and modalities are D's."""
    size, n_mod = [int(s) for s in ckpt["size"]], int(ckpt["n_modalities"])
    here = [int(s) for s in getattr(D, "size", size)]
    n_here = int(getattr(D, "n_img", n_mod))
    if size != here or n_mod != n_here:
        raise GliomagenError(
            f"{where}: the parent was trained on {'x'.join(map(str, size))} volumes of {n_mod} "
            f"modalities, the store holds {'x'.join(map(str, here))} of {n_here}"
        )


def _check_model(ckpt: Mapping[str, Any], config: Config, where: str, source: str) -> None:
    """Every ``model`` key but :data:`FREE_MODEL_KEYS` is the parent's."""
    was = to_dict(from_dict(ckpt["config"], source=source))["model"]
    for key, now in to_dict(config)["model"].items():
        if key not in FREE_MODEL_KEYS and was.get(key) != now:
            raise GliomagenError(
                f"{where}: model.{key} is {was.get(key)!r} there and {now!r} here; train with "
                f"the parent's model settings (its config.yaml)"
            )


# -- the generic part: every tensor but the condition layers ---------------------------------------
def _copy_plain(
    own: Mapping[str, torch.Tensor],
    parent: Mapping[str, torch.Tensor],
    special: Callable[[str], bool],
    where: str,
    net: str,
) -> dict[str, torch.Tensor]:
    """``own`` with every non-``special`` tensor replaced by the parent's (same names, shapes);
    ``special`` tensors keep their own values until rebuilt."""
    out: dict[str, torch.Tensor] = {}
    for k, v in own.items():
        if special(k):
            out[k] = v
        elif k not in parent:
            raise GliomagenError(f"{where}: the parent's {net} has no {k}")
        elif parent[k].shape != v.shape:
            raise GliomagenError(
                f"{where}: {net} tensor {k} is {list(parent[k].shape)} in the parent and "
                f"{list(v.shape)} here"
            )
        else:
            out[k] = parent[k]
    extra = [k for k in parent if k not in own and not special(k)]
    if extra:
        raise GliomagenError(f"{where}: the parent's {net} has {extra[0]}, this model has not")
    return out


def _get(sd: Mapping[str, torch.Tensor], key: str, where: str) -> torch.Tensor:
    if key not in sd:
        raise GliomagenError(f"{where}: the parent has no {key}")
    return sd[key]


# -- linear layers in effective terms (weight x its equalised-lr gain) -----------------------------
def _wkey(layer: nn.Module, prefix: str) -> str:
    """The state-dict name of a layer's weight (spectral norm keeps it as ``...original``)."""
    sn = parametrize.is_parametrized(layer, "weight")
    return prefix + ("parametrizations.weight.original" if sn else "weight")


def _gain(layer: Any, n_in: int) -> float:
    """The weight gain ``layer`` (an ``EqualLinear``) has with ``n_in`` inputs."""
    if parametrize.is_parametrized(layer, "weight"):
        return 1.0
    return float(layer.weight_gain) * math.sqrt(layer.in_features / n_in)


def _effective(
    layer: Any, sd: Mapping[str, torch.Tensor], prefix: str, n_in: int, where: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W [out, n_in], b [out])`` that ``layer``'s stored tensors in ``sd`` stand for."""
    w = _get(sd, _wkey(layer, prefix), where).float() * _gain(layer, n_in)
    return w, _get(sd, prefix + "bias", where).float() * float(layer.bias_gain)


def _put(
    out: dict[str, torch.Tensor], prefix: str, layer: Any, w: torch.Tensor, b: torch.Tensor
) -> None:
    """Store effective ``w``, ``b`` as ``layer``'s tensors under ``prefix``."""
    out[_wkey(layer, prefix)] = w / _gain(layer, layer.in_features)
    out[prefix + "bias"] = b / float(layer.bias_gain)


def _rows(table: torch.Tensor, sources: list[int | None], n_known: int) -> torch.Tensor:
    """Rows of ``table`` per source code (``None``: the mean of its first ``n_known`` rows)."""
    mean = table[:n_known].float().mean(0) if n_known else table.new_zeros(table.shape[1:])
    return torch.stack([table[s].float() if s is not None else mean for s in sources])


def _embedding(table: torch.Tensor, sources: list[int | None], n_known: int) -> torch.Tensor:
    """A new embedding table: :func:`_rows`, then the parent's 'unknown' slot."""
    return torch.cat([_rows(table, sources, n_known), table[n_known : n_known + 1].float()])


def _cont_input(
    layer: Any, sd: Mapping[str, torch.Tensor], prefix: str, m: SchemaMatch, where: str
) -> dict[str, torch.Tensor]:
    """A continuous-input layer: kept columns re-standardised, new ones zero, dropped ones gone."""
    w_p, b = _effective(layer, sd, prefix, m.parent_n_cont, where)
    w = w_p.new_zeros(w_p.shape[0], len(m.cont))
    b = b.clone()
    for k, f in enumerate(m.cont):
        if f.parent_index is not None:  # W x_p + b with x_p = scale x + shift
            w[:, k] = w_p[:, f.parent_index] * f.scale
            b += w_p[:, f.parent_index] * f.shift
    out: dict[str, torch.Tensor] = {}
    _put(out, prefix, layer, w, b)
    return out


# -- G: the mapping network's condition embedding -------------------------------------------------
def _generator_state(
    G: Any, sd: Mapping[str, torch.Tensor], m: SchemaMatch, where: str, net: str
) -> dict[str, torch.Tensor]:
    """G's state dict from the parent's: condition embedding rebuilt, latent-prior buffers the
    new run's own, the rest copied."""
    p = "mapping.embed."

    def special(k: str) -> bool:
        return k.startswith(p) or is_prior_buffer(k)

    out = _copy_plain(G.state_dict(), sd, special, where, net)
    out.update(_embedding_state(G.mapping.embed, sd, p, m, where))
    return out


def _embedding_state(
    emb: ConditionEmbedding, sd: Mapping[str, torch.Tensor], p: str, m: SchemaMatch, where: str
) -> dict[str, torch.Tensor]:
    """The tables, continuous layer and projection of :class:`ConditionEmbedding`."""
    out: dict[str, torch.Tensor] = {}
    for i, f in enumerate(m.cat):
        if f.parent_index is not None:
            table = _get(sd, f"{p}tables.{f.parent_index}.weight", where)
            n_known = m.parent_cat_sizes[f.parent_index]
            out[f"{p}tables.{i}.weight"] = _embedding(table, f.sources, n_known)
    if emb.cont is not None and m.parent_n_cont:  # else its own (its projection block is zero)
        out.update(_cont_input(emb.cont, sd, p + "cont.", m, where))
    if emb.project is None:
        return out
    e = emb.out_dim
    n_parts = len(m.parent_cat_sizes) + (1 if m.parent_n_cont else 0)
    w_p, b = _effective(emb.project, sd, p + "project.", e * n_parts, where)
    blocks = w_p.split(e, dim=1)  # one [E, E] block per parent part: its fields, then continuous
    zero = w_p.new_zeros(e, e)
    parts = [blocks[f.parent_index] if f.parent_index is not None else zero for f in m.cat]
    if emb.cont is not None:
        parts.append(blocks[-1] if m.parent_n_cont else zero)
    b = b.clone()
    for j in m.dropped_cat:  # a dropped field's average contribution joins the bias
        table = _get(sd, f"{p}tables.{j}.weight", where).float()
        b += blocks[j] @ table[: m.parent_cat_sizes[j]].mean(0)
    if emb.cont is None and m.parent_n_cont:  # every continuous field dropped: its bias joins
        b += blocks[-1] @ _get(sd, p + "cont.bias", where).float()  # lr_mul 1: as stored
    _put(out, p + "project.", emb.project, torch.cat(parts, dim=1), b)
    return out


# -- D: projection embeddings, the score layer and the auxiliary heads -----------------------------
def _discriminator_state(
    D: Any, sd: Mapping[str, torch.Tensor], m: SchemaMatch, where: str
) -> dict[str, torch.Tensor]:
    """D's state dict from the parent's (see the module docstring)."""
    own = D.state_dict()

    def special(k: str) -> bool:  # the label-consistency segmenter: copied when both have it
        seg_alone = k.startswith("seg.") and (k not in own or k not in sd)
        return k.split(".")[0] in D_CONDITION_PARTS or seg_alone

    out = _copy_plain(own, sd, special, where, "D")
    fold = torch.zeros(D.feature_dim, device=next(D.parameters()).device)
    for i, f in enumerate(m.cat):
        key = f"embed.{i}.weight"
        if f.parent_index is None:
            out[key] = torch.zeros_like(own[key])  # a new field: no effect until trained
        else:
            table = _get(sd, f"embed.{f.parent_index}.weight", where)
            out[key] = _embedding(table, f.sources, m.parent_cat_sizes[f.parent_index])
    for j in m.dropped_cat:
        fold += _get(sd, f"embed.{j}.weight", where)[: m.parent_cat_sizes[j]].float().mean(0)
    if D.embed_cont is not None and m.parent_n_cont:
        out.update(_cont_input(D.embed_cont, sd, "embed_cont.", m, where))
    elif D.embed_cont is not None:
        zeros = torch.zeros(D.feature_dim, len(m.cont), device=fold.device)
        _put(out, "embed_cont.", D.embed_cont, zeros, zeros[:, 0])
    elif m.parent_n_cont:
        fold += _get(sd, "embed_cont.bias", where).float()  # lr_mul 1: the stored bias
    if bool(fold.any()):  # <fold, h> / sqrt(C) joins the score layer's weight
        w, b = _effective(D.out, out, "out.", D.feature_dim, where)
        _put(out, "out.", D.out, w + fold / math.sqrt(D.feature_dim), b)
    _aux_state(D, sd, m, out, where)
    return out


def _aux_state(
    D: Any, sd: Mapping[str, torch.Tensor], m: SchemaMatch, out: dict[str, torch.Tensor], where: str
) -> None:
    """D's auxiliary heads: a kept category's logit row, a new one's from its source or the
    mean; a kept continuous output re-standardised; a new field's head its own."""
    c = D.feature_dim
    for i, f in enumerate(m.cat):
        if i < len(D.aux_cat) and f.parent_index is not None:
            w, b = _effective(D.aux_cat[i], sd, f"aux_cat.{f.parent_index}.", c, where)
            n_known = m.parent_cat_sizes[f.parent_index]
            w, b = _rows(w, f.sources, n_known), _rows(b, f.sources, n_known)
            _put(out, f"aux_cat.{i}.", D.aux_cat[i], w, b)
    if D.aux_cont is None or not m.parent_n_cont:
        return
    w_p, b_p = _effective(D.aux_cont, sd, "aux_cont.", c, where)
    w, b = _effective(D.aux_cont, out, "aux_cont.", c, where)
    w, b = w.clone(), b.clone()
    for k, f in enumerate(m.cont):  # y = (y_p - shift) / scale in the new standardisation
        if f.parent_index is not None:
            w[k] = w_p[f.parent_index] / f.scale
            b[k] = (b_p[f.parent_index] - f.shift) / f.scale
    _put(out, "aux_cont.", D.aux_cont, w, b)


__all__ = ["FREE_MODEL_KEYS", "check_init_args", "describe", "init_networks", "read_parent"]
