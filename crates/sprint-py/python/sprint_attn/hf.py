"""Hugging Face transformers with SPRINT attention.

:func:`register` adds ``"sprint"`` to transformers' attention-function registry
(``AttentionInterface``; done on import when transformers is installed) and its mask
registry (``AttentionMaskInterface``, so that the
attention function always receives the full boolean mask and padding is never dropped).
Then either

- ``model = AutoModel.from_pretrained(path, attn_implementation="sprint")`` (or
  ``from_config``) followed by :func:`patch` to choose the configuration, or
- ``session = sprint_attn.hf.patch(model, config)`` on a loaded model,

runs every attention layer of the model through :func:`sprint_attn.attend` on CPU and keeps
one trace per layer (and per batch element) in the returned :class:`Session`.

Supported: models whose attention modules dispatch through transformers'
``ALL_ATTENTION_FUNCTIONS`` (decided by reading what the model's attention modules do, not
by the ``_supports_attention_backend`` flag: Llama, Mistral, Qwen2/3, Phi-3, Gemma, GPT-2,
BERT, RoBERTa, ViT, DeiT, and encoder-decoder models such as BART and Whisper, whose
cross-attention runs with every decoder query real and the encoder's padding as key
padding), with causal or bidirectional masks plus padding. Anything SPRINT cannot express
raises :class:`SprintUnsupported`, never a silent fallback to dense attention: attention
modules that compute attention themselves, sliding-window or packed-sequence masks,
additive score biases (T5's relative position bias, ALiBi), attention sinks, logit
soft-capping, head masks, attention dropout in training, and tensors not on the CPU.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import _native
from . import _config as _to_config  # type: ignore[attr-defined]
from ._native import Config, Trace

NAME = "sprint"

__all__ = ["NAME", "Record", "Session", "SprintUnsupported", "patch", "register", "set_default"]


class SprintUnsupported(NotImplementedError):
    """The model or its attention call uses something SPRINT attention cannot compute
    (the message says what); nothing falls back to dense attention."""


@dataclass
class Record:
    """One attention call of one layer on one batch element."""

    #: Layer index in the model (``module.layer_idx``, else call order).
    layer: int
    #: Batch element.
    batch: int
    #: Forward pass of the model (0, 1, ...; counted by :func:`patch`'s forward hook).
    forward: int
    #: The summary dict of :func:`sprint_attn.attend`.
    summary: dict
    #: The trace (one layer); None when the session does not keep traces.
    trace: Optional[Trace]


@dataclass
class Session:
    """A SPRINT configuration bound to a model, and what its attention calls produced."""

    #: The attention configuration.
    config: Config
    #: Layers of the model (for the config's per-layer thresholds); None = unknown.
    num_layers: Optional[int] = None
    #: Keep the trace of every call (memory: ``heads * n_queries * n_keys / 8`` bytes each).
    keep_traces: bool = True
    #: Name written into the traces' headers.
    workload: str = "hf"
    #: Every call, in order.
    records: List[Record] = field(default_factory=list)
    _forward: int = 0
    _hooked: bool = False
    _order: Dict[int, int] = field(default_factory=dict)

    def layer_of(self, module: Any) -> int:
        """The layer index of an attention module: the one :func:`patch` numbered it with
        (unique across an encoder-decoder's stacks), else ``module.layer_idx``, else the
        order of first call."""
        idx = getattr(module, "_sprint_layer", None)
        if isinstance(idx, int):
            return idx
        idx = getattr(module, "layer_idx", None)
        if isinstance(idx, int):
            return idx
        key = id(module)
        if key not in self._order:
            self._order[key] = len(self._order)
        return self._order[key]

    def next_forward(self) -> None:
        """Starts a new forward pass (records of later calls get the next counter).
        :func:`patch` calls it before every forward of the model."""
        self._forward += 1

    def clear(self) -> None:
        """Forgets every record."""
        self.records.clear()
        self._forward = -1 if self._hooked else 0

    def traces(self, forward: int = -1, batch: int = 0) -> List[Trace]:
        """The per-layer traces of one forward pass (default: the last) and batch element,
        in layer order."""
        if not self.records:
            raise ValueError("no attention call recorded yet")
        if forward < 0:
            forward = max(r.forward for r in self.records) + 1 + forward
        recs = sorted(
            (r for r in self.records if r.forward == forward and r.batch == batch),
            key=lambda r: r.layer,
        )
        layers = [r.layer for r in recs]
        if len(set(layers)) != len(layers):
            raise ValueError(
                f"forward {forward} has several calls of one layer: call "
                "session.next_forward() between forward passes (patch() does it by itself)"
            )
        if any(r.trace is None for r in recs):
            raise ValueError("this session does not keep traces (keep_traces=False)")
        return [r.trace for r in recs]

    def model_trace(self, forward: int = -1, batch: int = 0) -> Trace:
        """The per-layer traces of one forward pass joined into one trace (for
        :func:`sprint_attn.simulate`)."""
        return Trace.concat(self.traces(forward, batch), workload=self.workload)

    def write_traces(self, folder: str, forward: int = -1, batch: int = 0) -> List[str]:
        """Writes ``layerNN.trace`` files of one forward pass into ``folder``; returns the
        paths."""
        os.makedirs(folder, exist_ok=True)
        paths = []
        for i, t in enumerate(self.traces(forward, batch)):
            p = os.path.join(folder, f"layer{i:02d}.trace")
            t.write(p)
            paths.append(p)
        return paths

    def kept_fraction(self) -> float:
        """Kept (query, key) pairs / visible pairs over every recorded call."""
        kept = sum(r.summary["kept_pairs"] for r in self.records)
        visible = sum(r.summary["visible_pairs"] for r in self.records)
        return kept / visible if visible else 0.0


_DEFAULT: Optional[Session] = None


def set_default(config: Any = None, **kwargs: Any) -> Session:
    """Sets the session used by models that run ``attn_implementation="sprint"`` without
    :func:`patch` (keyword arguments as :class:`Session`). Returns it."""
    global _DEFAULT
    cfg = _to_config(config) or Config()
    _DEFAULT = Session(cfg, **kwargs)
    return _DEFAULT


def _session(module: Any) -> Session:
    s = getattr(module, "_sprint_session", None)
    if s is not None:
        return s
    if _DEFAULT is None:
        raise SprintUnsupported(
            "SPRINT attention has no configuration for this model: call "
            "sprint_attn.hf.patch(model, config) or sprint_attn.hf.set_default(config)"
        )
    return _DEFAULT


def _pattern(
    allowed: Optional[Any], n_q: int, n_k: int, module: Any
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], bool]:
    """(query_valid, key_valid, causal) reproducing the boolean mask `allowed` [n_q, n_k]
    exactly on real queries, or SprintUnsupported."""
    if allowed is None:
        # No mask at all: transformers only does this when nothing is masked.
        causal = bool(getattr(module, "is_causal", False)) and n_q > 1
        return None, None, causal
    a = allowed.cpu().numpy().astype(bool)
    if n_q > n_k:
        raise SprintUnsupported(f"more queries ({n_q}) than keys ({n_k})")
    key_valid = a.any(axis=0)
    query_valid = key_valid[n_k - n_q :].copy()
    full = np.broadcast_to(key_valid, (n_q, n_k))
    i = np.arange(n_q)[:, None]
    j = np.arange(n_k)[None, :]
    causal_m = full & (j <= i + (n_k - n_q))
    rows = query_valid
    if np.array_equal(a[rows], full[rows]):
        causal = False
    elif np.array_equal(a[rows], causal_m[rows]):
        causal = True
    else:
        raise SprintUnsupported(
            "the attention mask is neither bidirectional nor causal with padding "
            "(sliding window, chunked or packed sequences, prefix-LM); SPRINT cannot run it"
        )
    if key_valid.all():
        return None, None, causal
    return query_valid, key_valid, causal


def _cross_pattern(
    allowed: Optional[Any], n_q: int, n_k: int
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], bool]:
    """(query_valid, key_valid, causal) of a cross-attention call: queries come from the
    decoder and are all real, keys from the encoder; the mask may only drop encoder
    padding, the same keys for every query, else SprintUnsupported."""
    if allowed is None:
        return None, None, False
    a = allowed.cpu().numpy().astype(bool)
    key_valid = a.any(axis=0)
    if not np.array_equal(a, np.broadcast_to(key_valid, (n_q, n_k))):
        raise SprintUnsupported(
            "the cross-attention mask differs between queries; SPRINT only runs key padding "
            "there"
        )
    if key_valid.all():
        return None, None, False
    return None, key_valid, False


_BIAS_KWARGS = ("position_bias", "alibi", "attention_bias", "attn_bias", "relative_position_bias")


def sprint_attention_forward(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Optional[Any],
    scaling: Optional[float] = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> Tuple[Any, None]:
    """The attention function registered as ``"sprint"``: ``query`` ``[batch, heads, n_q,
    d]``, ``key``/``value`` ``[batch, kv_heads, n_k, d]``; returns ``([batch, n_q, heads,
    d], None)`` (no attention weights)."""
    import torch

    session = _session(module)
    if dropout and getattr(module, "training", False):
        raise SprintUnsupported("attention dropout in training mode (call model.eval())")
    # A sliding window shows in the mask (checked below); these do not.
    for name in ("softcap", "s_aux", "sinks", "head_mask"):
        if kwargs.get(name) is not None:
            raise SprintUnsupported(f"`{name}` is not supported by SPRINT attention")
    # Additive score biases (T5's relative position bias, ALiBi) change the scores.
    for name in _BIAS_KWARGS:
        bias = kwargs.get(name)
        if bias is not None and (not torch.is_tensor(bias) or bool(torch.any(bias != 0))):
            raise SprintUnsupported(
                f"additive attention bias `{name}` (relative position bias, ALiBi) is not "
                "supported by SPRINT attention"
            )
    if query.device.type != "cpu":
        raise SprintUnsupported(f"tensors on {query.device}: SPRINT attention runs on the CPU")
    b, h, n_q, d = query.shape
    n_k = key.shape[2]
    if scaling is None:
        scaling = d**-0.5
    q = query.detach().float()
    factor = float(scaling) * math.sqrt(d)
    if factor != 1.0:
        # The core scales logits by 1/sqrt(d); fold the model's own scaling into q.
        q = q * factor
    k = key.detach().float()
    v = value.detach().float()
    mask = attention_mask
    if mask is not None:
        if mask.dim() != 4 or mask.shape[1] != 1:
            raise SprintUnsupported(f"attention mask of shape {tuple(mask.shape)}")
        if mask.dtype != torch.bool:
            blocked = mask <= torch.finfo(mask.dtype).min / 2
            if bool(torch.any((mask != 0) & ~blocked)):
                raise SprintUnsupported(
                    "the float attention mask carries an additive bias (values other than 0 "
                    "and -inf); SPRINT attention only takes masks"
                )
            mask = ~blocked
    layer = session.layer_of(module)
    outs = []
    for i in range(b):
        allowed = None
        if mask is not None:
            allowed = mask[i if mask.shape[0] > 1 else 0, 0]
        if getattr(module, "_sprint_cross", False):
            qv, kv, causal = _cross_pattern(allowed, n_q, n_k)
        else:
            qv, kv, causal = _pattern(allowed, n_q, n_k, module)
        out, summary, trace = _native.attend(
            q[i].contiguous().numpy(),
            k[i].contiguous().numpy(),
            v[i].contiguous().numpy(),
            session.config,
            None,
            qv,
            kv,
            causal,
            None,
            layer,
            session.num_layers,
            False,
            f"{session.workload} layer {layer}",
        )
        session.records.append(
            Record(layer, i, session._forward, summary, trace if session.keep_traces else None)
        )
        outs.append(torch.from_numpy(out))
    o = torch.stack(outs).to(query.dtype)
    return o.transpose(1, 2).contiguous(), None


def _mask_function(*args: Any, **kwargs: Any) -> Any:
    from transformers.masking_utils import sdpa_mask

    # Always materialise the boolean mask: SPRINT reads causality and padding from it.
    kwargs["allow_is_causal_skip"] = False
    kwargs["allow_is_bidirectional_skip"] = False
    return sdpa_mask(*args, **kwargs)


def register(name: str = NAME) -> None:
    """Registers SPRINT attention (and its mask function) under ``name`` in transformers."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface
    except ImportError as e:
        raise ImportError(
            "sprint_attn.hf needs transformers >= 4.56 (AttentionInterface); "
            "pip install transformers"
        ) from e
    AttentionInterface.register(name, sprint_attention_forward)
    AttentionMaskInterface.register(name, _mask_function)


# Importing this module makes attn_implementation="sprint" available when transformers is.
try:
    register()
except ImportError:  # pragma: no cover - depends on the environment
    pass


def patch(
    model: Any,
    config: Any = None,
    *,
    keep_traces: bool = True,
    workload: Optional[str] = None,
) -> Session:
    """Runs `model`'s attention with SPRINT: registers ``"sprint"``, switches the model to
    it and binds a :class:`Session` with `config` (a :class:`Config`, dict or TOML path) to
    every submodule. Returns the session that collects the traces.

    Raises:
        SprintUnsupported: the model does not dispatch attention through transformers'
            registry.
    """
    register()
    attention = _attention_modules(model)
    model.set_attn_implementation(NAME)
    cfg = _to_config(config) or Config()
    mcfg = getattr(model, "config", None)
    text_cfg = mcfg.get_text_config() if hasattr(mcfg, "get_text_config") else mcfg
    n_layers = getattr(text_cfg, "num_hidden_layers", None)
    # Encoder-decoder models number each stack from 0: number every attention module
    # once, in module order (encoder, then per decoder layer self- then cross-attention).
    indices = [getattr(m, "layer_idx", None) for m in attention]
    if any(not isinstance(i, int) for i in indices) or len(set(indices)) != len(indices):
        for i, m in enumerate(attention):
            m._sprint_layer = i
        n_layers = len(attention)
    name = workload or getattr(mcfg, "model_type", None) or type(model).__name__
    session = Session(cfg, num_layers=n_layers, keep_traces=keep_traces, workload=name)
    session._forward = -1  # the hook below makes the first forward number 0
    session._hooked = True
    for m in model.modules():
        m._sprint_session = session
    for m in attention:
        old_cross = getattr(m, "_sprint_cross_hook", None)
        if old_cross is not None:
            old_cross.remove()
        m._sprint_cross_hook = m.register_forward_pre_hook(_mark_cross, with_kwargs=True)
    old = getattr(model, "_sprint_hook", None)
    if old is not None:
        old.remove()
    if hasattr(model, "register_forward_pre_hook"):
        model._sprint_hook = model.register_forward_pre_hook(
            lambda *_: session.next_forward()
        )
    return session


#: Arguments through which an attention module receives another sequence's states (its
#: call is then cross-attention).
_CROSS_ARGS = ("key_value_states", "encoder_hidden_states")


def _mark_cross(module: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
    """Forward pre-hook of an attention module: records whether this call attends to another
    sequence (cross-attention), read from the arguments the module is called with."""
    try:
        bound = inspect.signature(module.forward).bind_partial(*args, **kwargs).arguments
    except TypeError:
        bound = kwargs
    module._sprint_cross = any(bound.get(name) is not None for name in _CROSS_ARGS)


@functools.lru_cache(maxsize=None)
def _forward_source(cls: type) -> str:
    """The source of ``cls.forward``, inherited or its own (empty when it cannot be
    read); read once per class."""
    forward = getattr(cls, "forward", None)
    if forward is None:
        return ""
    try:
        return inspect.getsource(forward)
    except (OSError, TypeError):
        return ""


def _attention_modules(model: Any) -> List[Any]:
    """The modules of `model` that dispatch attention through transformers' registry (their
    ``forward`` calls ``ALL_ATTENTION_FUNCTIONS``), in module order.

    Raises:
        SprintUnsupported: no module dispatches, or a module named ``...Attention`` neither
            dispatches nor contains one that does (it computes attention itself).
    """
    modules = list(model.modules()) if hasattr(model, "modules") else [model]
    dispatch = [m for m in modules if "ALL_ATTENTION_FUNCTIONS" in _forward_source(type(m))]
    if not dispatch:
        raise SprintUnsupported(
            f"{type(model).__name__} does not dispatch attention through transformers' "
            "AttentionInterface (no module calls ALL_ATTENTION_FUNCTIONS), so SPRINT "
            "attention cannot be plugged in"
        )
    ids = {id(m) for m in dispatch}
    for m in modules:
        name = type(m).__name__
        if not name.endswith("Attention") or id(m) in ids or _forward_source(type(m)) == "":
            continue
        if not any(id(c) in ids for c in m.modules()):
            raise SprintUnsupported(
                f"{name} computes attention itself instead of dispatching through "
                "transformers' AttentionInterface, so SPRINT attention cannot replace it"
            )
    return dispatch
