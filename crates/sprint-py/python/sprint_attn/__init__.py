"""SPRINT sparse attention (MICRO 2022) from Python.

The Rust core (the `sprint` workspace) does all the work; this package converts arrays and
arguments. Units: thresholds in logit units (``q . k / sqrt(d)``), noise sigmas as fractions
of the crossbar full scale, buffers and moved data in bytes, energy in pJ, time in cycles
and seconds.

- :class:`Config`: the attention configuration, parsed and validated by the Rust core
  (keys: docs/configuration.md); errors raise :class:`SprintError` naming the key.
- :func:`attend`: SPRINT attention (every variant) on numpy arrays or torch CPU tensors,
  returning the output, a summary dict (the same fields as ``sprint attend --json``) and
  the :class:`Trace`.
- :class:`Trace`: an attention trace (docs/trace-format.md): open, write, per-query kept
  sets, statistics, provenance.
- :func:`simulate`: the cycle-level simulator, the same statistics as
  ``sprint simulate --json``.
- :mod:`sprint_attn.hf`: Hugging Face transformers with SPRINT attention.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._native import Config, SprintError, Trace, __version__

__all__ = [
    "Config",
    "SprintError",
    "SimulationResult",
    "Trace",
    "attend",
    "presets",
    "simulate",
    "workloads",
    "__version__",
]


def presets() -> list:
    """Built-in hardware preset names for :func:`simulate`."""
    return list(_native.presets())


def workloads() -> list:
    """The paper's workload names for :func:`simulate`."""
    return list(_native.workloads())


def _is_torch(x: Any) -> bool:
    mod = type(x).__module__
    return mod.startswith("torch") and hasattr(x, "detach")


def _f32(x: Any, name: str) -> np.ndarray:
    """A float32 numpy view of `x` (numpy array, torch CPU tensor, or nested lists).

    No copy for float32 numpy arrays and float32 CPU tensors; other dtypes are converted.
    """
    if _is_torch(x):
        t = x.detach()
        if t.device.type != "cpu":
            raise ValueError(f"{name}: only CPU tensors are supported, got device {t.device}")
        if t.dtype != _torch().float32:
            t = t.float()
        return t.numpy()
    a = np.asarray(x)
    if a.dtype != np.float32:
        if not np.issubdtype(a.dtype, np.number) and a.dtype != np.bool_:
            raise TypeError(f"{name}: expected a float array, got dtype {a.dtype}")
        a = a.astype(np.float32)
    return a


def _mask(x: Any, name: str) -> Optional[np.ndarray]:
    if x is None:
        return None
    if _is_torch(x):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype != np.bool_:
        a = a != 0
    return a


def _torch():
    import torch

    return torch


def _config(config: Union[None, Config, Mapping[str, Any], str, os.PathLike]) -> Optional[Config]:
    if config is None or isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return Config(dict(config))
    if isinstance(config, (str, os.PathLike)):
        return Config.from_file(os.fspath(config))
    raise TypeError(
        "config must be a sprint_attn.Config, a dict, or the path of a TOML file, "
        f"got {type(config).__name__}"
    )


def attend(
    q: Any,
    k: Any,
    v: Any,
    config: Union[None, Config, Mapping[str, Any], str, os.PathLike] = None,
    valid: Any = None,
    causal: Optional[bool] = None,
    *,
    query_valid: Any = None,
    key_valid: Any = None,
    thresholds: Any = None,
    layer: int = 0,
    num_layers: Optional[int] = None,
    compare_dense: bool = False,
    workload: str = "python",
) -> Tuple[Any, dict, Trace]:
    """SPRINT attention, computed by the Rust core with the GIL released.

    Args:
        q: queries, ``[heads, n_queries, head_dim]`` or ``[layers, heads, n_queries,
            head_dim]``, real units (numpy array or torch CPU tensor; float32 is used as
            is, other dtypes are converted).
        k, v: keys and values, ``[kv_heads, n_keys, head_dim]`` (with the same leading
            layers axis as ``q``); ``heads`` must be a multiple of ``kv_heads`` (GQA).
        config: a :class:`Config`, a dict of config keys, or a TOML file path; the
            defaults (variant ``sprint``, threshold -inf) when omitted.
        valid: bool ``[seq]``, True = real token, for queries and keys alike (as
            ``sprint attend``'s ``valid`` tensor; needs ``n_queries == n_keys``).
        causal: overrides the config's ``causal`` when not None.
        query_valid, key_valid: separate padding masks ``[n_queries]``, ``[n_keys]``.
        thresholds: ``Th`` in logit units overriding the config's: a scalar, one per head
            ``[heads]``, or ``[layers, heads]``.
        layer: index of the first layer of this call in the model (selects the config's
            per-layer thresholds and the noise streams); the trace numbers layers from 0.
        num_layers: layers of the whole model, for the config's per-layer thresholds
            (default ``layer + layers in this call``).
        compare_dense: also compute dense float attention and report
            ``summary["error_vs_dense"]`` (as ``sprint attend`` does).
        workload: name written into the trace header.

    Returns:
        ``(out, summary, trace)``: ``out`` has the shape of ``q`` (a torch tensor if ``q``
        was one, sharing memory with the numpy result), ``summary`` the fields of
        ``sprint attend --json`` (fractions in [0, 1], bytes), ``trace`` the
        :class:`Trace` of every (layer, head).

    Raises:
        SprintError: bad shapes, non-finite inputs, bad config or thresholds.
    """
    as_torch = _is_torch(q)
    qa, ka, va = _f32(q, "q"), _f32(k, "k"), _f32(v, "v")
    th = None if thresholds is None else np.asarray(
        thresholds.detach().cpu().numpy() if _is_torch(thresholds) else thresholds,
        dtype=np.float32,
    )
    out, summary, trace = _native.attend(
        qa,
        ka,
        va,
        _config(config),
        _mask(valid, "valid"),
        _mask(query_valid, "query_valid"),
        _mask(key_valid, "key_valid"),
        causal,
        th,
        int(layer),
        None if num_layers is None else int(num_layers),
        bool(compare_dense),
        str(workload),
    )
    if as_torch:
        out = _torch().from_numpy(out)
    return out, summary, trace


class SimulationResult(dict):
    """The ``sprint simulate --json`` document as a dict: ``workload``,
    ``workload_statistics``, ``energy_table``, ``energy_table_values``, ``wall_seconds``
    and ``designs`` (one dict of statistics per design, names as in ``--json``:
    ``time.cycles``, ``energy_pj.total``, ``bytes_moved.total``, ...)."""

    def to_pandas(self):
        """One row per design (index: preset key), one column per statistic (the merged
        preset ``config`` is left out). Needs pandas."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("to_pandas() needs pandas: pip install pandas") from e
        rows = [{k: v for k, v in d.items() if k != "config"} for d in self["designs"]]
        return pd.DataFrame(rows).set_index("design.key")


def _override(key: str, value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float, np.integer, np.floating)):
        text = repr(float(value)) if isinstance(value, (float, np.floating)) else str(int(value))
    elif isinstance(value, str):
        text = value
    else:
        raise TypeError(f"override {key}: use a bool, number or string, got {type(value).__name__}")
    return f"{key}={text}"


def simulate(
    trace_or_workload: Union[Trace, str, os.PathLike],
    presets: Union[str, Sequence[str]] = ("s-sprint",),
    overrides: Optional[Mapping[str, Any]] = None,
    energy: str = "default",
    *,
    workload: Optional[str] = None,
    stats: Union[None, str, os.PathLike] = None,
    seq_len: Optional[int] = None,
    padding: Optional[float] = None,
) -> SimulationResult:
    """Simulates hardware presets on a trace or a paper workload, like
    ``sprint simulate --json`` (same statistics and names).

    Args:
        trace_or_workload: a :class:`Trace`, the path of a trace file, or a paper workload
            name (see :func:`workloads`).
        presets: built-in preset names (see :func:`presets`) or TOML files; ratios are
            against the first.
        overrides: ``{"memory.trcd_ns": 30, "energy.reram.read_pj_per_bit": 1.0}``: preset
            values (every preset) or, with the ``energy.`` prefix, energy-table values.
        energy: energy table: ``default``, ``optimistic``, ``conservative`` or a TOML file.
        workload: with a trace, a paper workload whose shape the trace must match.
        stats: workload-statistics TOML for synthetic kept sets (paper workloads).
        seq_len: override the paper workload's sequence length (tokens).
        padding: override the paper workload's padding fraction (0 <= f < 1).

    Returns:
        a :class:`SimulationResult` (a dict, with ``to_pandas()``).
    """
    if isinstance(presets, str):
        presets = [presets]
    sets = [_override(k, v) for k, v in (overrides or {}).items()]
    trace = trace_path = None
    wl = workload
    if isinstance(trace_or_workload, Trace):
        trace = trace_or_workload
    elif isinstance(trace_or_workload, str) and trace_or_workload in _native.workloads():
        if workload is not None:
            raise ValueError("give the workload once")
        wl = trace_or_workload
    elif isinstance(trace_or_workload, (str, os.PathLike)):
        trace_path = os.fspath(trace_or_workload)
    else:
        raise TypeError(
            "trace_or_workload must be a Trace, a trace file path or a workload name "
            f"({', '.join(_native.workloads())})"
        )
    doc = _native.simulate(
        list(presets),
        trace,
        trace_path,
        wl,
        sets,
        str(energy),
        None if stats is None else os.fspath(stats),
        seq_len,
        padding,
    )
    return SimulationResult(doc)
