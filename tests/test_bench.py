"""The benchmark: its FLOP count worked out by hand, and a run on tiny data through the project's
own data, params and model code."""

import dataclasses
import json
import subprocess

import pytest
import yaml
from conftest import DIGITS, TINY, tiny_digits, tiny_mnist_files, tiny_params

from digits.bench import SGEMM_SPREAD, TIMING_SPREAD, busy_signs, training_flops_per_epoch
from digits.data import save_split, scale_pixels


def test_training_flops_are_six_per_weight_per_image():
    params = dataclasses.replace(TINY, hidden_units=(128,))
    multiply_adds = 784 * 128 + 128 * 10
    assert training_flops_per_epoch(params, n_images=1000) == 6 * multiply_adds * 1000


def test_a_quiet_machine_shows_no_sign_of_being_busy():
    assert busy_signs([170, 175, 178], [2.50, 2.55, 2.60], [1.60, 1.66, 1.70]) == []


def test_busy_names_each_set_of_runs_that_spread_too_far():
    agreeing = [1.0, 1.0]
    assert busy_signs([100, 120], agreeing, agreeing) == [
        f"sgemm rounds 100-120 GFLOP/s, 1.20x apart (over {SGEMM_SPREAD}x)"
    ]
    assert busy_signs([100, 100], [1.0, 1.3], agreeing) == [
        f"plain Keras' rounds 1-1.3 s/epoch, 1.30x apart (over {TIMING_SPREAD}x)"
    ]
    signs = busy_signs([100, 100], agreeing, [2.0, 2.6])
    assert signs == [f"the project's rounds 2-2.6 s/epoch, 1.30x apart (over {TIMING_SPREAD}x)"]


def test_a_spread_at_the_limit_is_not_busy():
    assert busy_signs([100, 100 * SGEMM_SPREAD], [1.0, TIMING_SPREAD], [1.0, TIMING_SPREAD]) == []


@pytest.mark.integration
def test_bench_runs_the_project_code_and_ends_with_its_json(tmp_path):
    """Both configurations on tiny data; the default in bfloat16, so its limit is measured with
    bfloat16 products while the seed's stays float32. It names the processor it measured."""
    for split, seed in (("train", 1), ("validation", 2)):
        images, labels = tiny_digits(200, seed)
        save_split(tmp_path / "prepared", split, scale_pixels(images), labels)
    settings = tiny_params(tiny_mnist_files())
    settings["train"].update(precision="mixed_bfloat16", jit_compile=False, compiled_loop=False)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(settings))
    done = subprocess.run(
        [DIGITS, "bench", "--epochs", "1", "--repeats", "1"]
        + ["--params", str(params), "--data-dir", str(tmp_path / "prepared")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert set(result) == {"seed", "default", "busy", "processor"}
    assert f"machine: {result['processor']}\n" in done.stdout
    for name, dtype in (("seed", "float32"), ("default", "bfloat16")):
        measured = result[name]
        assert measured["project_s_per_epoch"] > 0 and measured["baseline_s_per_epoch"] > 0
        assert len(measured["project_runs"]) == len(measured["sgemm_gflops_runs"]) == 1
        assert measured["sgemm_dtype"] == dtype
        assert measured["busy_signs"] == []  # one round: nothing to disagree with
        assert f"GFLOP/s in {dtype}" in done.stdout
