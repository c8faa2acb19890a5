"""3-D inputs: meshes sampled to points, .npy clouds, normalisation, clear errors."""
from pathlib import Path

import numpy as np
import pytest

from anymal.encoders.geometry import load_points
from anymal.errors import InputError

trimesh = pytest.importorskip("trimesh")


@pytest.mark.parametrize("fmt", ["ply", "obj", "off", "stl"])
def test_mesh_formats_sample_normalised_points(tmp_path, fmt):
    box = trimesh.creation.box(extents=(200.0, 100.0, 50.0))  # centimetres, like Sweet Home 3D
    box.apply_translation((500, 0, 0))
    p = tmp_path / f"box.{fmt}"
    box.export(p)
    pts = load_points(p, n=512)
    assert pts.shape == (512, 3) and pts.dtype == np.float32
    assert np.allclose(pts.mean(0), 0, atol=1e-5) and np.isclose(np.linalg.norm(pts, axis=1).max(), 1.0)
    assert np.array_equal(pts, load_points(p, n=512))  # seeded: same file, same points
    assert np.ptp(pts[:, 0]) > np.ptp(pts[:, 2]) * 3  # shape survives normalisation


def test_npy_and_array_inputs(tmp_path):
    cloud = np.random.default_rng(0).standard_normal((2000, 3)) * 10 + 3
    np.save(tmp_path / "c.npy", cloud)
    assert load_points(tmp_path / "c.npy", n=256).shape == (256, 3)
    assert load_points(cloud[:100], n=256).shape == (256, 3)  # fewer points: sampled with replacement


def test_bad_3d_inputs(tmp_path):
    (tmp_path / "e.ply").write_bytes(b"")
    with pytest.raises(InputError, match="e.ply: empty file"):
        load_points(tmp_path / "e.ply")
    (tmp_path / "junk.stl").write_bytes(b"\x00\x01garbage" * 3)
    with pytest.raises(InputError, match="junk.stl: "):
        load_points(tmp_path / "junk.stl")
    (tmp_path / "x.xyz").write_text("1 2 3\n")
    with pytest.raises(InputError, match="unsupported 3-D format '.xyz'"):
        load_points(tmp_path / "x.xyz")
    with pytest.raises(InputError, match=r"got shape \[10, 2\]"):
        load_points(np.zeros((10, 2)))
    with pytest.raises(InputError, match="degenerate"):
        load_points(np.ones((10, 3)))


@pytest.mark.skipif(not Path("/usr/share/sweethome3d/furniture").is_dir(), reason="apt sweethome3d-furniture not installed")
def test_real_sweethome3d_model():
    import zipfile

    cat = sorted(Path("/usr/share/sweethome3d/furniture").glob("*.sh3f"))[0]
    with zipfile.ZipFile(cat) as z:
        obj = next(n for n in z.namelist() if n.lower().endswith(".obj"))
        data = z.read(obj)
    pts = load_points(data, n=1024, file_type="obj")
    assert pts.shape == (1024, 3) and np.isclose(np.linalg.norm(pts, axis=1).max(), 1.0)
