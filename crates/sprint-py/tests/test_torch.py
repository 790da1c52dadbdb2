"""attend on torch CPU tensors (skipped when torch is not installed)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")

import sprint_attn as sa  # noqa: E402


def tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(4, 40, 16, generator=g)
    k = torch.randn(2, 40, 16, generator=g)
    v = torch.randn(2, 40, 16, generator=g)
    return q, k, v


def test_torch_in_torch_out_same_as_numpy():
    q, k, v = tensors()
    cfg = {"threshold": {"value": 0.0}}
    out, s, t = sa.attend(q, k, v, cfg)
    ref, s_np, _ = sa.attend(q.numpy(), k.numpy(), v.numpy(), cfg)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert np.array_equal(out.numpy(), ref) and s == s_np


def test_torch_dtypes_and_views():
    q, k, v = tensors()
    ref, _, _ = sa.attend(q, k, v)
    out, _, _ = sa.attend(q.double(), k.double(), v.double())
    assert torch.equal(out, ref)
    qt = q.transpose(1, 2).contiguous().transpose(1, 2)  # non-contiguous view, same values
    out, _, _ = sa.attend(qt, k, v)
    assert torch.equal(out, ref)
    out, _, _ = sa.attend(q.bfloat16(), k, v)
    assert out.shape == q.shape
    valid = torch.ones(40, dtype=torch.bool)
    valid[35:] = False
    out, _, _ = sa.attend(q, k, v, valid=valid)
    assert torch.all(out[:, 35:] == 0)


def test_torch_requires_grad_is_fine_and_bad_shapes_raise():
    q, k, v = tensors()
    q.requires_grad_(True)
    out, _, _ = sa.attend(q, k, v)
    assert not out.requires_grad
    with pytest.raises(sa.SprintError):
        sa.attend(q[:, :, :4], k, v)
