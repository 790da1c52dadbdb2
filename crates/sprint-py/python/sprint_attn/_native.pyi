"""Type stubs of the Rust extension `sprint_attn._native` (crates/sprint-py/src/lib.rs).

Units: thresholds in logit units (q . k / sqrt(d)), noise sigmas as fractions of the
crossbar full scale, buffers and moved data in bytes, energy in pJ, time in cycles/seconds.
"""

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

class SprintError(ValueError):
    """An error reported by the Rust core; the message names the key or tensor."""

class Config:
    """The attention configuration, parsed and validated by the Rust core
    (`sprint_core::config::AttentionConfig`; keys: docs/configuration.md)."""

    def __init__(self, mapping: Optional[Dict[str, Any]] = None, **overrides: Any) -> None:
        """From nested dicts (the TOML document) and keyword overrides of top-level keys
        (a dict value merges into that section). Raises SprintError naming a bad key."""
    @staticmethod
    def from_toml(text: str, origin: str = "config") -> "Config":
        """Parses TOML text (same parser and checks as `sprint attend --config`)."""
    @staticmethod
    def from_file(path: Union[str, os.PathLike], **overrides: Any) -> "Config":
        """Reads a TOML file, then applies keyword overrides."""
    def replace(self, **overrides: Any) -> "Config":
        """A copy with keyword overrides applied."""
    def to_dict(self) -> Dict[str, Any]:
        """Every key as nested dicts."""
    def to_toml(self) -> str:
        """TOML text readable by `sprint attend --config`."""
    def thresholds(self, layers: int, heads: int) -> List[List[float]]:
        """Resolved thresholds Th (logit units), [layers][heads]."""
    @property
    def variant(self) -> str:
        """dense, runtime-pruning, sprint-no-recompute, sprint, or a peer design (sanger, leopard, a3, energon, spatten; spatten runs only in a model forward: attend on one layer raises an error naming why)."""
    @property
    def causal(self) -> bool:
        """Causal masking."""
    @property
    def seed(self) -> int:
        """Noise seed."""

class Trace:
    """An attention trace: header plus one block per (layer, query head)."""

    @staticmethod
    def open(path: Union[str, os.PathLike]) -> "Trace":
        """Reads and validates a trace file."""
    def write(self, path: Union[str, os.PathLike]) -> None:
        """Writes the trace atomically."""
    @staticmethod
    def concat(traces: Sequence["Trace"], workload: Optional[str] = None) -> "Trace":
        """Joins traces of the same shape; their layers follow one another."""
    @property
    def header(self) -> Dict[str, Any]:
        """Producer, workload, variant, shape, bytes per vector, buffer sizes (bytes)."""
    @property
    def layers(self) -> int: ...
    @property
    def heads(self) -> int: ...
    @property
    def n_queries(self) -> int: ...
    @property
    def n_keys(self) -> int: ...
    @property
    def head_dim(self) -> int: ...
    @property
    def variant(self) -> str: ...
    @property
    def workload(self) -> str: ...
    def blocks(self) -> List[Tuple[int, int]]:
        """(layer, head) of every block in file order."""
    def kept(self, layer: int, head: int, query: int) -> npt.NDArray[np.int64]:
        """Kept key indices of one query, ascending."""
    def kept_sets(self, layer: int, head: int) -> List[npt.NDArray[np.int64]]:
        """Kept key indices of every query of one head."""
    def mask(self, layer: int, head: int) -> npt.NDArray[np.bool_]:
        """Kept mask [n_queries, n_keys]."""
    def valid(self, layer: int, head: int) -> Tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """(query_valid [n_queries], key_valid [n_keys])."""
    def records(self, layer: int, head: int) -> Dict[str, npt.NDArray[np.uint32]]:
        """Per-query counts in keys: kept, softmax_kept, k_fetched, k_reused, k_streamed,
        v_fetched, v_reused, v_streamed."""
    def stats(self) -> Dict[str, Any]:
        """Summed counts, bytes fetched/reused by kind, and the simulator's measured
        workload statistics (keep_rate_per_layer, softmax_fraction, query_overlap,
        padding_fraction)."""
    def __len__(self) -> int: ...

def attend(
    q: npt.NDArray[np.float32],
    k: npt.NDArray[np.float32],
    v: npt.NDArray[np.float32],
    config: Optional[Config] = None,
    valid: Optional[npt.NDArray[np.bool_]] = None,
    query_valid: Optional[npt.NDArray[np.bool_]] = None,
    key_valid: Optional[npt.NDArray[np.bool_]] = None,
    causal: Optional[bool] = None,
    thresholds: Optional[npt.NDArray[np.float32]] = None,
    layer: int = 0,
    num_layers: Optional[int] = None,
    compare_dense: bool = False,
    workload: str = "python",
) -> Tuple[npt.NDArray[np.float32], Dict[str, Any], Trace]: ...
def simulate(
    presets: List[str],
    trace: Optional[Trace] = None,
    trace_path: Optional[str] = None,
    workload: Optional[str] = None,
    sets: List[str] = ...,
    energy: str = "default",
    stats: Optional[str] = None,
    seq_len: Optional[int] = None,
    padding: Optional[float] = None,
) -> Dict[str, Any]: ...
def presets() -> List[str]: ...
def workloads() -> List[str]: ...
def vector_bytes(head_dim: int, index_bytes: int) -> Dict[str, int]:
    """Bytes per vector of each kind (k_msb, k_lsb, v, q, index)."""
