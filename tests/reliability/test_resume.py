"""Checkpoints, exact resume after Ctrl-C, survival of SIGKILL, and safe loading."""

from __future__ import annotations

import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import ppgen
from ppgen import dist, runs
from ppgen.errors import NonFiniteError, RunDirError

# Long enough to be interrupted mid-way on a busy 2-core machine, short enough to finish.
SETTINGS = {
    "numpyro": ["linreg", "--steps", "60000", "--particles", "32", "--checkpoint-every", "500"],
    "pyro": ["linreg", "--steps", "3000", "--particles", "8", "--checkpoint-every", "100"],
}


def _start(args: list[str], out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "ppgen.cli", "fit", *args, "--out", str(out), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _reference(backend: str, tmp: Path) -> dict[str, np.ndarray]:
    out = tmp / "reference"
    argv = [*SETTINGS[backend], "--backend", backend]
    proc = subprocess.run(
        [sys.executable, "-m", "ppgen.cli", "fit", *argv, "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return load_file(str(out / "params.safetensors"))


def _resume(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ppgen.cli", "fit", "--resume", str(out), "--quiet"],
        capture_output=True,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpyro", "pyro"])
def test_sigint_checkpoints_and_resume_is_bitwise(tmp_path: Path, backend: str) -> None:
    out = tmp_path / "run"
    proc = _start([*SETTINGS[backend], "--backend", backend], out)
    assert _wait_for(out / runs.CHECKPOINT, proc), proc.communicate()[1]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    if proc.returncode == 0:
        pytest.skip("the run finished before the interrupt landed")
    assert proc.returncode == 130, err
    assert "resume with" in err and "Traceback" not in err
    stopped = runs.load_checkpoint(out).step
    assert 0 < stopped < int(SETTINGS[backend][2])
    resumed = _resume(out)
    assert resumed.returncode == 0, resumed.stderr
    got = load_file(str(out / "params.safetensors"))
    want = _reference(backend, tmp_path)
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_resumable_directory(tmp_path: Path) -> None:
    rng = random.Random(0)
    backend = "pyro"
    for attempt in range(2):
        out = tmp_path / f"run{attempt}"
        proc = _start([*SETTINGS[backend], "--backend", backend], out)
        assert _wait_for(out / "config.json", proc)
        time.sleep(rng.uniform(0.5, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        runs.validate_run_dir(out)  # no half-written file anywhere
        if not (out / runs.CHECKPOINT).exists():
            with pytest.raises(RunDirError, match="no checkpoint"):
                runs.load_checkpoint(out)
            continue
        assert runs.load_checkpoint(out).step % 100 == 0
        resumed = _resume(out)
        assert resumed.returncode == 0, resumed.stderr
        assert (out / "params.safetensors").exists()
        losses = np.loadtxt(out / "metrics.csv", delimiter=",", skiprows=1)
        assert losses.shape == (3000, 2) and np.all(np.isfinite(losses))


class _Payload:
    """Unpickling this creates a file: the proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name", ["params.pkl", "checkpoint.safetensors", "weights.bin", "x.json"])
def test_crafted_pickle_is_refused_unexecuted(
    checkpointed_run: Path, tmp_path: Path, name: str
) -> None:
    run = tmp_path / "run"
    import shutil

    shutil.copytree(checkpointed_run, run)
    marker = tmp_path / "executed"
    (run / name).write_bytes(pickle.dumps(_Payload(marker), protocol=4))
    with pytest.raises(RunDirError, match="pickle|safetensors|extension"):
        ppgen.fit(resume=run, progress=False)
    assert not marker.exists()


def test_checkpoint_round_trip(checkpointed_run: Path) -> None:
    ckpt = runs.load_checkpoint(checkpointed_run)
    assert ckpt.step == 20 and ckpt.losses.shape == (20,)
    assert np.all(np.isfinite(ckpt.losses))
    assert {k.split("[")[0] for k in ckpt.arrays} == {"param", "optim"}


def test_resume_in_process_equals_uninterrupted(tmp_path: Path, backend: str) -> None:
    from ppgen.errors import TrainingInterrupted

    kwargs = {"backend": backend, "steps": 120, "checkpoint_every": 40, "particles": 2}
    full = ppgen.fit("linreg", out=tmp_path / "full", progress=False, lr_decay=0.5, **kwargs)

    class StopAt80(runs.Checkpointer):
        def interrupted(self) -> bool:
            return (self.out / runs.CHECKPOINT).exists() and runs.load_checkpoint(
                self.out
            ).step >= 80

    original = runs.Checkpointer
    runs.Checkpointer = StopAt80  # type: ignore[misc]
    try:
        with pytest.raises(TrainingInterrupted) as info:
            ppgen.fit("linreg", out=tmp_path / "cut", progress=False, lr_decay=0.5, **kwargs)
    finally:
        runs.Checkpointer = original  # type: ignore[misc]
    # The flag is seen at the next chunk boundary (chunks of 5 steps here), which checkpoints.
    assert info.value.step == 85
    assert runs.load_checkpoint(tmp_path / "cut").step == 85
    resumed = ppgen.fit(resume=tmp_path / "cut", progress=False)
    np.testing.assert_array_equal(full.losses, resumed.losses)
    for name, value in full.params.items():
        np.testing.assert_array_equal(value, resumed.params[name])


@ppgen.model(data=lambda: np.zeros(4, np.float32))
def sometimes_nan(x):
    z = ppgen.sample("z", dist.Normal(0.0, 1.0))
    # log(2.5 - z) is NaN whenever the guide draws z > 2.5 (about 1 step in 160 here).
    ppgen.factor("cliff", ppgen.ops.log(2.5 - z))
    with ppgen.plate("n", x.shape[0]):
        ppgen.sample("x", dist.Normal(z, 1.0), obs=x)


@sometimes_nan.guide
def sometimes_nan_guide(x):
    ppgen.sample("z", dist.Normal(ppgen.param("loc", 0.0), 1.0))


def test_on_nonfinite_stop_names_step_and_site(backend: str) -> None:
    with pytest.raises(NonFiniteError, match="site 'cliff'") as info:
        ppgen.fit(sometimes_nan, backend=backend, steps=3000, progress=False)
    assert info.value.site == "cliff" and info.value.step >= 0


def test_on_nonfinite_skip_counts_and_finishes(backend: str) -> None:
    result = ppgen.fit(
        sometimes_nan, backend=backend, steps=3000, on_nonfinite="skip", progress=False
    )
    # P(z > 2.5) under N(loc ≈ -0.1, 1) is about 0.005: 3000 steps give ~15 skips.
    assert 3 <= result.skipped_steps <= 60
    assert np.isfinite(result.params["loc"]).all()
    assert np.isnan(result.losses).sum() + np.isinf(result.losses).sum() == result.skipped_steps
