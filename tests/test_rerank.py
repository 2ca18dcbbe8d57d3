"""The EMD rerank against exact EMD (scipy linprog), and dominant colours."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.sparse import coo_matrix
from skimage import color

from chromatica_watch.colour import histogram as H
from chromatica_watch.colour import rerank as R
from chromatica_watch.imaging.lab import srgb_to_lab
from chromatica_watch.search.query import color_query_histogram, image_query_histogram, parse_colors
from tests.conftest import PHOTO_NAMES, photo, solid, write_rgb

CENTRES = H.bin_centers_lab().astype(np.float64)
# Stated tolerance against exact EMD: every pair within 1.5% (+0.05 delta E), the mean within 0.5%.
# Measured on these histograms: mean 0.2%, worst 0.9% (the c-transformed dual is a lower bound of
# the pruned problem; pruning to 99.5% of the moved mass accounts for the rest).
REL_TOL, ABS_TOL, MEAN_REL_TOL = 0.015, 0.05, 0.005


def exact_emd(a: np.ndarray, b: np.ndarray) -> float:
    """Exact EMD by linear programming on the supports of a and b (no difference trick, no pruning)."""
    a = np.asarray(a, np.float64) / a.sum()
    b = np.asarray(b, np.float64) / b.sum()
    ia, ib = np.nonzero(a)[0], np.nonzero(b)[0]
    p, n = len(ia), len(ib)
    cost = np.linalg.norm(CENTRES[ia][:, None, :] - CENTRES[ib][None, :, :], axis=2).ravel()
    rows = np.concatenate([np.repeat(np.arange(p), n), p + np.tile(np.arange(n), p)])
    cols = np.concatenate([np.arange(p * n), np.arange(p * n)])
    # One marginal constraint is redundant (both sum to 1); dropping it keeps HiGHS feasible.
    eq = coo_matrix((np.ones(2 * p * n), (rows, cols)), shape=(p + n, p * n)).tocsr()[:-1]
    res = linprog(cost, A_eq=eq, b_eq=np.concatenate([a[ia], b[ib]])[:-1], bounds=(0, None), method="highs")
    assert res.status == 0, res.message
    return float(res.fun)


def trimmed(h: np.ndarray, n: int) -> np.ndarray:
    """A real histogram cut to its n heaviest bins (of at least 1e-4), renormalized: a small support."""
    keep = np.argsort(-h)[:n]
    keep = keep[h[keep] >= 1e-4]
    out = np.zeros(H.TOTAL_BINS, np.float64)
    out[keep] = h[keep]
    return out / out.sum()


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    """Histograms of crops of real photos: supports of about 30 to 300 bins."""
    rng = np.random.default_rng(0)
    hists = []
    for name in (*PHOTO_NAMES, "camera", "colorwheel", "retina", "cat"):
        img = photo(name)
        h, w = img.shape[:2]
        for _ in range(3):
            y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
            crop = img[y:y + h // 3, x:x + w // 3]
            hists.append(H.lab_histogram(srgb_to_lab(crop)))
    return hists


def test_distance_to_itself_is_zero_and_positive_otherwise(crops: list[np.ndarray]) -> None:
    for h in crops[:6]:
        assert R.emd(h, h) == 0.0
    assert R.emd(crops[0], crops[5]) > 1.0
    d = R.emd_many(crops[0], np.stack([crops[0], crops[0], crops[1]]))
    assert d[0] == 0.0 and d[1] == 0.0 and d[2] > 0


def test_symmetric_bit_for_bit(crops: list[np.ndarray]) -> None:
    for i in range(0, len(crops) - 1, 3):
        a, b = crops[i], crops[i + 1]
        assert R.emd(a, b) == R.emd(b, a)


def test_batched_and_single_pair_agree(crops: list[np.ndarray]) -> None:
    cands = np.stack(crops[1:])
    batched = R.emd_many(crops[0], cands)
    single = np.array([R.emd(crops[0], c) for c in cands])
    assert np.allclose(batched, single, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("support", [30, 80, H.TOTAL_BINS])
def test_agrees_with_exact_emd_from_linprog(crops: list[np.ndarray], support: int) -> None:
    small = [trimmed(h, support) for h in crops]
    errors = []
    for i in range(len(small)):
        for j in (i + 1, i + 5):
            if j < len(small):
                exact = exact_emd(small[i], small[j])
                ours = R.emd(small[i], small[j])
                assert abs(ours - exact) <= REL_TOL * exact + ABS_TOL, (i, j, ours, exact)
                errors.append(abs(ours - exact) / exact)
    assert np.mean(errors) <= MEAN_REL_TOL


def test_rerank_orders_like_exact_emd(crops: list[np.ndarray]) -> None:
    query = trimmed(crops[0], 60)
    cands = np.stack([trimmed(h, 60) for h in crops[1:]])
    exact = np.array([exact_emd(query, c) for c in cands])
    ids = np.arange(100, 100 + len(cands))
    got_ids, got = R.rerank(query, ids, cands, refine=len(cands))
    assert np.all(np.diff(got) >= 0)
    assert list(got_ids[:5]) == list(ids[np.argsort(exact)[:5]])
    ranks_ours = np.argsort(np.argsort(got_ids))
    ranks_exact = np.argsort(np.argsort(ids[np.argsort(exact)]))
    assert np.corrcoef(ranks_ours, ranks_exact)[0, 1] > 0.99


def test_rerank_refines_the_head_and_screens_the_rest(crops: list[np.ndarray]) -> None:
    rng = np.random.default_rng(3)
    cands = np.stack([w[0] * crops[i] + w[1] * crops[j] for i, j, w in
                      zip(rng.integers(0, len(crops), 120), rng.integers(0, len(crops), 120),
                          rng.dirichlet([1, 1], 120), strict=True)])
    ids = np.arange(1, 121)[::-1].copy()
    got_ids, got = R.rerank(crops[4], ids, cands, k=12, refine=20)
    assert sorted(got_ids.tolist()) == sorted(ids.tolist())
    assert np.all(np.diff(got) >= 0)
    # The first max(k, refine) carry the accurate distance, and they are the true best 20.
    accurate = R.emd_many(crops[4], cands, R.ACCURATE)
    position = {int(i): n for n, i in enumerate(ids)}
    head = [position[int(i)] for i in got_ids[:20]]
    assert np.allclose(got[:20], accurate[head], rtol=1e-4, atol=1e-4)
    assert set(head[:10]) == set(np.argsort(accurate)[:10].tolist())


def test_rerank_edge_cases(crops: list[np.ndarray]) -> None:
    ids, d = R.rerank(crops[0], np.zeros(0, np.int64), np.zeros((0, H.TOTAL_BINS), np.float32))
    assert len(ids) == 0 and len(d) == 0
    ids, d = R.rerank(crops[0], np.array([7, 3]), np.stack([crops[0], crops[0]]))
    assert ids.tolist() == [3, 7] and d.tolist() == [0.0, 0.0]  # ties broken by id
    with pytest.raises(ValueError):
        R.rerank(crops[0], np.array([1, 2]), np.stack([crops[0]]))


def test_single_colors_far_apart_are_their_lab_distance() -> None:
    """Moving all the mass of one colour to another costs their distance (for bin-centre colours)."""
    a = np.zeros(H.TOTAL_BINS)
    b = np.zeros(H.TOTAL_BINS)
    a[100], b[900] = 1.0, 1.0
    assert R.emd(a, b) == pytest.approx(float(np.linalg.norm(CENTRES[100] - CENTRES[900])), rel=1e-4)


def test_lab_to_srgb_matches_skimage() -> None:
    rng = np.random.default_rng(1)
    lab = rng.uniform([0, -86, -108], [100, 98, 95], size=(20000, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about negative Z, which both clip
        ref = color.lab2rgb(lab[None])[0]
    assert np.abs(R.lab_to_srgb(lab) - ref).max() < 1e-6
    rgb = photo("coffee")
    back = R.lab_to_srgb(srgb_to_lab(rgb)) * 255
    assert np.abs(back - rgb.reshape(-1, 3)).max() < 0.5


def channels(hex_color: str) -> np.ndarray:
    return np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])


def test_dominant_colors_of_a_solid_red_image(tmp_path: Path) -> None:
    hist = image_query_histogram(str(write_rgb(tmp_path / "red.jpg", solid((255, 0, 0)),
                                               IMWRITE_JPEG_QUALITY=95)))
    colors = R.dominant_colors(hist)
    hex_color, share = colors[0]
    assert np.abs(channels(hex_color) - [255, 0, 0]).max() <= 8, colors
    assert share > 0.97
    assert sum(s for _, s in colors) <= 1.0 + 1e-9


def test_dominant_colors_of_stripes_and_weighted_queries(tmp_path: Path) -> None:
    img = solid((0, 68, 255), (40, 100))
    img[:, :70] = (255, 136, 0)  # 70% orange, 30% blue
    colors = R.dominant_colors(image_query_histogram(str(write_rgb(tmp_path / "stripes.png", img))))
    assert [c for c, _ in colors[:2]] == ["#ff8800", "#0044ff"]
    assert [s for _, s in colors[:2]] == pytest.approx([0.7, 0.3], abs=0.01)
    query = R.dominant_colors(color_query_histogram(parse_colors(["#008080:0.6", "#800080:0.4"])), top=2)
    assert [c for c, _ in query] == ["#008080", "#800080"]
    assert [s for _, s in query] == pytest.approx([0.6, 0.4], abs=0.01)


def test_dominant_colors_of_photos_are_few_and_sum_to_at_most_one() -> None:
    for name in PHOTO_NAMES:
        colors = R.dominant_colors(H.lab_histogram(srgb_to_lab(photo(name))), top=5)
        assert 1 <= len(colors) <= 5
        shares = [s for _, s in colors]
        assert shares == sorted(shares, reverse=True)
        assert 0 < sum(shares) <= 1.0 + 1e-9
        assert all(len(c) == 7 and c.startswith("#") for c, _ in colors)
    assert R.dominant_colors(np.zeros(H.TOTAL_BINS)) == []
