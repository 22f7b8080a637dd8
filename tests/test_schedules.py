import json
from pathlib import Path

import numpy as np
import pytest

from scalelaws.schedules import REGISTRY, lr_array, param_defaults, validate

REFDATA = Path(__file__).resolve().parents[2] / "shared" / "refdata" / "multipower"
P, E, W, T = 3e-4, 3e-5, 2160, 24000  # the multi-power-law reference runs


def refdata_schedule(name: str) -> np.ndarray:
    """The refdata README's schedule for a csv name, built with lr_array."""
    kind, _, arg = name.partition("_")
    if kind == "constant":
        return lr_array("constant", P, int(arg), W)
    if kind == "cosine":
        return lr_array("cosine", P, int(arg), W, final_lr=E)
    if kind in ("wsd", "wsdld"):
        shape = "exp" if kind == "wsd" else "linear"
        return lr_array("wsd", P, T, W, decay_steps=4000, shape=shape, final_lr=E)
    if kind == "wsdcon":
        return lr_array("wsdcon", P, 16000, W, drop_step=8000, value=int(arg) * 1e-5)
    raise AssertionError(name)


@pytest.mark.skipif(not REFDATA.is_dir(), reason="../shared/refdata not beside the checkout")
def test_reproduces_refdata_lr_columns():
    files = sorted(REFDATA.glob("csv_*/*.csv"))
    assert len(files) == 27
    first_steps = set()
    for f in files:
        data = np.loadtxt(f, delimiter=",", skiprows=1)
        steps, lr = data[:, 0].astype(int), data[:, 1]
        first_steps.add(int(steps[0]))
        ours = refdata_schedule(f.stem)[steps]
        np.testing.assert_allclose(ours, lr, rtol=1e-12, atol=0, err_msg=str(f))
    assert first_steps == {2160, 2176}  # README: rows start at 2160 or 2176


@pytest.mark.skipif(not REFDATA.is_dir(), reason="../shared/refdata not beside the checkout")
def test_array_from_optimized_schedule_file(tmp_path):
    post = np.load(REFDATA / "optimized_schedules" / "400.npy")  # 21840 post-warmup steps
    full = np.concatenate([np.linspace(0, P, W), post])
    np.save(tmp_path / "s.npy", full)
    lr = lr_array("array", P, T, W, path=str(tmp_path / "s.npy"))
    assert lr.dtype == np.float64 and lr.shape == (T,)
    np.testing.assert_array_equal(lr, full)
    with pytest.raises(ValueError, match=r"schedule\.values: length 21840 != total_steps 24000"):
        lr_array("array", P, T, W, values=post.tolist())


def test_warmup_rule_and_constant():
    lr = lr_array("constant", 1.0, 10, 5)
    np.testing.assert_allclose(lr, [0, 0.25, 0.5, 0.75, 1, 1, 1, 1, 1, 1], atol=0)
    np.testing.assert_array_equal(lr_array("constant", 2.0, 4, 0), [2.0] * 4)


def test_cosine_boundaries():
    lr = lr_array("cosine", 1.0, 110, 10)  # default final_lr = peak/10
    assert lr[0] == 0 and lr[9] == 1.0 and lr[10] == 1.0
    # half way through the post-warmup part: (P+E)/2
    assert lr[60] == pytest.approx(0.55, abs=1e-15)
    # last step: E + (P-E)/2·(1+cos(π·99/100))
    assert lr[-1] == pytest.approx(0.1 + 0.45 * (1 + np.cos(np.pi * 0.99)), abs=1e-15)
    assert lr[-1] > 0.1 and lr[-1] - 0.1 < 1e-3
    assert np.all(np.diff(lr[10:]) < 0)


@pytest.mark.parametrize("shape", ["linear", "cosine", "exp", "1-sqrt"])
def test_wsd_shapes(shape):
    lr = lr_array("wsd", 1.0, 100, 10, decay_steps=20, shape=shape, final_lr=0.01)
    assert lr[9] == 1.0 and np.all(lr[10:81] == 1.0)  # stable until step 80 = 100 - 20
    assert np.all(np.diff(lr[80:]) < 0)  # decay strictly falls
    f = 19 / 20  # last step
    expected = {
        "linear": 1 - f + 0.01 * f,
        "cosine": 0.01 + 0.99 / 2 * (1 + np.cos(np.pi * f)),
        "exp": 0.01**f,
        "1-sqrt": 0.01 + 0.99 * (1 - np.sqrt(f)),
    }[shape]
    assert lr[-1] == pytest.approx(expected, rel=1e-12)
    # the decay midpoint (f = 1/2) tells the shapes apart
    mid = {"linear": 0.505, "cosine": 0.505, "exp": 0.1, "1-sqrt": 0.01 + 0.99 * (1 - 0.5**0.5)}
    assert lr[90] == pytest.approx(mid[shape], rel=1e-12)


def test_wsd_decay_frac_of_total():
    a = lr_array("wsd", 1.0, 1000, 100, decay_frac=0.25)
    b = lr_array("wsd", 1.0, 1000, 100, decay_steps=250)
    np.testing.assert_array_equal(a, b)
    assert a[750] == 1.0 and a[751] < 1.0 and a[-1] == pytest.approx(0.1 + 0.9 / 250)


def test_step_plateaus():
    lr = lr_array("step", 1.0, 100, 10, milestones=[40, 70], factor=0.5)
    post = lr[10:]
    assert len(np.unique(post)) == 3  # three plateaus
    np.testing.assert_array_equal(np.unique(post), [0.25, 0.5, 1.0])
    assert lr[39] == 1.0 and lr[40] == 0.5 and lr[69] == 0.5 and lr[70] == 0.25
    assert np.count_nonzero(np.diff(post)) == 2  # exactly two drops


def test_wsdcon_single_drop():
    lr = lr_array("wsdcon", 3e-4, 200, 20, drop_step=100, value=9e-5)
    assert lr[99] == 3e-4 and lr[100] == 9e-5 and lr[-1] == 9e-5
    assert np.count_nonzero(np.diff(lr[20:])) == 1


def test_array_values_and_json(tmp_path):
    values = np.linspace(1e-3, 1e-4, 50)
    np.testing.assert_array_equal(lr_array("array", 1e-3, 50, 5, values=values.tolist()), values)
    (tmp_path / "a.json").write_text(json.dumps({"values": values.tolist()}))
    np.testing.assert_array_equal(lr_array("array", 1e-3, 50, 0, path=tmp_path / "a.json"), values)


def test_param_defaults_cover_registry():
    assert set(REGISTRY) == {"constant", "cosine", "wsd", "step", "wsdcon", "array"}
    assert param_defaults("constant") == {}
    assert param_defaults("wsd") == dict(
        decay_steps=None, decay_frac=0.2, shape="linear", final_lr=None
    )
    # defaults are copies: editing one does not change the registry
    param_defaults("cosine")["final_lr"] = 5
    assert param_defaults("cosine") == {"final_lr": None}


@pytest.mark.parametrize(
    "args, params, field",
    [
        (("nope", 1e-3, 100, 10), {}, "name"),
        (("constant", 0.0, 100, 10), {}, "peak_lr"),
        (("constant", -1e-3, 100, 10), {}, "peak_lr"),
        (("constant", 1e-3, 100, 100), {}, "warmup_steps"),
        (("constant", 1e-3, 0, 0), {}, "total_steps"),
        (("constant", 1e-3, 100, 10), {"final_lr": 1e-4}, "final_lr"),  # unknown param
        (("cosine", 1e-3, 100, 10), {"decay_steps": 10}, "decay_steps"),  # unknown param
        (("cosine", 1e-3, 100, 10), {"final_lr": 2e-3}, "final_lr"),
        (("wsd", 1e-3, 100, 10), {"decay_steps": 91}, "decay_steps"),
        (("wsd", 1e-3, 100, 10), {"decay_frac": 0.95}, "decay_frac"),
        (("wsd", 1e-3, 100, 10), {"decay_steps": 10, "decay_frac": 0.1}, "decay_steps"),
        (("wsd", 1e-3, 100, 10), {"shape": "square"}, "shape"),
        (("wsd", 1e-3, 100, 10), {"final_lr": "1e-4"}, "final_lr"),
        (("wsd", 1e-3, 100, 10), {"shape": "exp", "final_lr": 0.0}, "final_lr"),
        (("step", 1e-3, 100, 10), {}, "milestones"),
        (("step", 1e-3, 100, 10), {"milestones": [5]}, "milestones"),
        (("step", 1e-3, 100, 10), {"milestones": [50, 100]}, "milestones"),
        (("step", 1e-3, 100, 10), {"milestones": [60, 50]}, "milestones"),
        (("step", 1e-3, 100, 10), {"milestones": [50], "factor": 2}, "factor"),
        (("wsdcon", 1e-3, 100, 10), {"value": 1e-4}, "drop_step"),
        (("wsdcon", 1e-3, 100, 10), {"drop_step": 50}, "value"),
        (("array", 1e-3, 3, 0), {"values": [1e-3, 1e-4]}, "values"),
        (("array", 1e-3, 2, 0), {"values": [2e-3, 1e-4]}, "values"),
        (("array", 1e-3, 2, 0), {"path": "/nonexistent/s.npy"}, "path"),
    ],
)
def test_validate_names_the_field(args, params, field):
    with pytest.raises(ValueError, match=rf"^schedule\.{field}: ") as err:
        validate(*args, **params)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=rf"^schedule\.{field}: "):
        lr_array(*args, **params)


def test_validate_accepts_good_specs():
    validate("wsd", 1e-3, 100, 10, decay_steps=90, shape="1-sqrt", final_lr=0.0)
    validate("step", 1e-3, 100, 10, milestones=[10, 99])
    validate("cosine", 1e-3, 100, 0, final_lr=None)  # None: default peak/10


def test_wsd_exp_short_decay_has_no_overflow():
    with np.errstate(all="raise"):
        lr = lr_array("wsd", 3e-4, 24000, 100, decay_steps=2, shape="exp", final_lr=3e-5)
    assert lr[-2] == 3e-4 and lr[-1] == pytest.approx((3e-4 * 3e-5) ** 0.5, rel=1e-12)
