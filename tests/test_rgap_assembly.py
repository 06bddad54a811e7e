"""R-GAP's fast dense pieces against slow obvious ones: the normal matrix assembled from cached
pixel pairs (both ways) against dense Jacobians, the LAPACK Cholesky against torch's, and the
triangular-solve preconditioner against the inverse of its blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradleak.analysis.assembly import normal_matrix, weight_channel_blocks
from gradleak.analysis.chain import layer_chain
from gradleak.analysis.dense import dense_matrices
from gradleak.analysis.factor import cholesky
from gradleak.analysis.operators import LayerMaps
from gradleak.analysis.system import LayerSystem


def _layers():
    """Conv layers with dilation, stride 2 + padding, a non-square kernel; and a fully connected one."""
    torch.manual_seed(0)
    leaky = lambda: nn.LeakyReLU(0.2)  # noqa: E731
    nets = [
        (nn.Sequential(nn.Conv2d(3, 5, 3, padding=2, dilation=2, bias=False), leaky(), nn.Flatten(),
                       nn.Linear(5 * 7 * 7, 2, bias=False)), (3, 7, 7)),
        (nn.Sequential(nn.Conv2d(2, 4, 4, stride=2, padding=2, bias=False), leaky(), nn.Flatten(),
                       nn.Linear(4 * 5 * 5, 2, bias=False)), (2, 8, 8)),
        (nn.Sequential(nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(0, 1), bias=False), leaky(), nn.Flatten(),
                       nn.Linear(3 * 3 * 7, 2, bias=False)), (2, 7, 6)),
        (nn.Sequential(nn.Flatten(), nn.Linear(12, 7, bias=False), leaky(), nn.Linear(7, 2, bias=False)), (3, 2, 2)),
    ]
    for model, shape in nets:
        for layer in layer_chain(model.double(), input_shape=shape)[:-1]:
            yield layer


@pytest.mark.parametrize("path", ["scatter", "sparse", "auto"])
def test_normal_matrix_equals_dense_jacobians(path):
    """``W^T W + s K^T K`` from the pixel pairs equals the product of the dense Jacobians to
    1e-12 relative (float64), and to float32's resolution when assembled in float32."""
    for layer in _layers():
        k = torch.randn(layer.out_size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        maps = LayerMaps(layer, k)
        w_rows, k_rows = dense_matrices(layer, k)
        ref = w_rows.T @ w_rows + 0.7 * k_rows.T @ k_rows
        for dtype, rtol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
            got = normal_matrix(maps.geo, maps.w, g=maps.gradient_pixel_normal(dtype), scale=0.7, dtype=dtype, path=path)
            assert got.dtype == dtype and got.is_contiguous() and got.shape == ref.shape
            assert float((got.double() - ref).abs().max()) <= rtol * float(ref.abs().max())
        c = maps.geo.in_shape[0]
        pixels = maps.geo.n // c
        blocks = (w_rows.T @ w_rows).view(c, pixels, c, pixels).diagonal(dim1=0, dim2=2).permute(2, 0, 1)
        assert torch.allclose(weight_channel_blocks(maps.geo, maps.w, torch.float64), blocks, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("lapack", [None, False])  # SciPy's LAPACK on CPU; torch's, as other devices get
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cholesky_matches_torch_and_rejects_indefinite(dtype, lapack):
    a = torch.randn(40, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    spd = (a @ a.T).to(dtype)
    factor = cholesky(spd, lapack=lapack)
    assert factor is not None and factor.dtype == dtype and factor.scipy == (lapack is None)
    tol = 1e-10 if dtype == torch.float64 else 1e-3
    assert torch.allclose(factor.factor.tril(), torch.linalg.cholesky(spd), rtol=tol, atol=tol)
    b = torch.randn(40, dtype=torch.float64)
    x = factor.solve(b).double()
    assert float((spd.double() @ x - b).norm() / b.norm()) < (1e-10 if dtype == torch.float64 else 1e-2)
    untouched = spd.clone()
    cholesky(spd, lapack=lapack)
    assert torch.equal(spd, untouched)  # without overwrite the input is kept
    assert cholesky(-spd, lapack=lapack) is None


def test_preconditioner_inverts_its_blocks():
    """The triangular-solve preconditioner applies the inverse of the channel-diagonal blocks."""
    layer = next(_layers())
    k = torch.randn(layer.out_size, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x = torch.rand(layer.in_size, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    maps = LayerMaps(layer, k)
    system = LayerSystem(layer, k=k, z=maps.weight_rows(x.reshape(1, -1)).reshape(-1),
                         grad=maps.gradient_rows(x.reshape(1, -1)))
    c = maps.geo.in_shape[0]
    pixels = maps.geo.n // c
    dense = system.dense().view(c, pixels, c, pixels).diagonal(dim1=0, dim2=2).permute(2, 0, 1)
    r = torch.randn(maps.geo.n, dtype=torch.float64)
    expected = torch.linalg.solve(dense, r.reshape(c, pixels, 1)).reshape(-1)
    assert float((system._preconditioner()(r) - expected).norm() / expected.norm()) < 1e-4  # float32 factors


def test_a_system_beyond_float32_range_falls_back_to_float64():
    """A noised update can carry entries whose normal matrix overflows float32 (the defense table's
    R-GAP run crashed on one): the mixed-precision path must step aside, not fail."""
    layer = next(_layers())
    k = 1e25 * torch.randn(layer.out_size, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x = torch.rand(layer.in_size, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    maps = LayerMaps(layer, k)
    system = LayerSystem(layer, k=k, z=maps.weight_rows(x.reshape(1, -1)).reshape(-1),
                         grad=maps.gradient_rows(x.reshape(1, -1)))
    assert system._refined_float32() is None
    solution = system.solve()
    assert solution.method != "cholesky32+refine"
    assert float((solution.x.reshape(-1) - x).norm() / x.norm()) < 1e-6
