"""Seeds of one variant trained together on JAX (`loops.seeds`) train what each trains alone.

Measured in one JAX child process for all variants (tests/together_equivalence.py: it pays JAX's
and Keras' start-up once), three seeds each, against the same seeds trained alone (`fit_fast`)
and alone from a start one ulp away (the control: what a rounding-level difference does).

Why "vmap" is not bit for bit: from the same state the vmapped step's forward pass (loss,
predictions, batch statistics, seed states) is bit-identical to the seed's alone, but vmap turns
each convolution's backward pass over stacked weights into a batched (grouped) convolution that
sums in another order: gradients differ by 1e-7 to 3e-6 relative, most in the first layers
(cnn88, batch 32). Adam divides by the gradient's running magnitude, so a weight whose gradient
is near zero can move anywhere within ±lr on such a difference; the nudged control shows the same
growth. "sequential" runs one seed's own compiled step on each state in turn: bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from conftest import PROJECT_ROOT

VARIANTS = ("cnn74", "cnn79", "cnn84", "cnn88")
LEARNING_RATE = 1e-3  # Adam's; the schedule halves it for the second epoch
# One Adam step moves a weight by lr · m/(√v + ε): for a gradient near zero, a rounding-level
# change moves it anywhere within ±lr, so two runs may differ by up to 2·lr in a few weights while
# the rest agree to rounding (as tests/test_loops.py allows `fit` and the fast loop).
ONE_STEP_SWING = 2 * LEARNING_RATE
ROUNDING = 1e-5  # together_equivalence.ROUNDING: a weight that differs by more did not just round
FEW = 1e-4  # of the weights: "a few" (30 of cnn88's 299,376 trainable weights)
# The rest of the state after the first call: batch statistics and seed states come from the
# identical forward pass, Adam's moments are 0.1·g and 0.001·g² of gradients equal to ~3e-6
# relative (|g| < 4), the metrics' running totals round at ~1e-5: measured at most 1.5e-5. A
# batch, mask or seed state mixed up moves them by 0.1 or more.
ONE_STEP_STATE = 1e-4
# A loss of ~2 in float32 rounds at 2.4e-7; a few steps of rounding-level differences in the
# weights move it by about 1e-6 (measured: at most 4e-6 together, 1.3e-2 for the control).
LOSS_ROUNDING = 1e-5


def _run_child() -> tuple[dict[str, dict], float]:
    started = time.perf_counter()
    # XLA's CPU backend at optimization level 0 compiles these steps in half the time (cnn88:
    # 3 s against 7 s); every arm is compiled alike, so the comparisons stand.
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
    script = PROJECT_ROOT / "tests" / "together_equivalence.py"
    done = subprocess.run(
        [sys.executable, str(script), *VARIANTS, "tiny", "--device-loop", "tiny"],
        env={**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": flags},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {result["variant"]: result for result in results}, time.perf_counter() - started


@pytest.fixture(scope="module")
def measured() -> dict[str, dict]:
    results, seconds = _run_child()
    print(f"together_equivalence: {seconds:.0f} s for {', '.join(results)}")
    return results


def _control_bound(result: dict, key: str, floor: float) -> float:
    """The largest difference from alone that the nudged start makes in `key`, over all seeds
    and epochs of the variant, or `floor` if that is larger."""
    rows = result["training"]["nudged"]
    differences = [
        abs(a - b) for row in rows for a, b in zip(row[key], row[f"alone_{key}"], strict=True)
    ]
    return max([floor, *differences])


@pytest.mark.slow
@pytest.mark.parametrize("variant", [*VARIANTS, "tiny"])
def test_each_seed_draws_its_own_batches_augmentations_and_masks_as_alone(
    measured: dict[str, dict], variant: str
) -> None:
    result = measured[variant]
    probe = result["probe"]
    masks = [key for key in probe["identical"] if key.startswith("mask")]
    assert len(masks) == {"tiny": 1}.get(variant, 3)  # every Dropout layer is drawn
    if variant in ("cnn88", "tiny"):
        assert "augmented" in probe["identical"]
    # together (vmapped over the runner's stacked state) and alone: the same draws, bit for bit
    assert all(probe["identical"].values()), probe["identical"]
    # and no two seeds share a batch, a mask or an augmentation
    assert result["first_batches_distinct"]
    assert all(probe["distinct"].values()), probe["distinct"]
    for how in ("vmap", "sequential", *(["device-loop"] if variant == "tiny" else [])):
        for seed in result["training"][how]:
            assert seed["same_batches"]  # every call gave each seed the batches it sees alone
            assert seed["first_call"]["integers_equal"]  # seed states and step count advanced alike


@pytest.mark.slow
@pytest.mark.parametrize("variant", [*VARIANTS, "tiny"])
def test_weights_after_the_first_step_agree_to_rounding(
    measured: dict[str, dict], variant: str
) -> None:
    result = measured[variant]
    steps = result["steps_per_call"]  # the networks: one step; tiny's first call: two
    for moved in result["first_call_moved"]:
        # the step moved most weights by ~lr: a state not written back would fail `differing`
        assert moved["differing"] > moved["count"] / 2
    for how in ("vmap", *(["device-loop"] if variant == "tiny" else [])):
        for seed in result["training"][how]:
            first = seed["first_call"]
            assert first["max"] <= steps * ONE_STEP_SWING, first
            assert first["differing"] <= FEW * first["count"], first
            assert first["float_max"] <= ONE_STEP_STATE, first


@pytest.mark.slow
@pytest.mark.parametrize("variant", [*VARIANTS, "tiny"])
def test_after_a_short_training_seeds_agree_within_what_rounding_explains(
    measured: dict[str, dict], variant: str
) -> None:
    # Bound: what the control (alone, from a start one ulp away) moves, over the variant's seeds
    # and epochs, and at least one image's worth of accuracy (a near-tie flips on any rounding),
    # LOSS_ROUNDING and ONE_STEP_SWING for losses and weights.
    result = measured[variant]
    one_image, one_validation_image = 1 / result["fit_count"], 1 / result["validation_count"]
    bounds = {
        "accuracy": _control_bound(result, "accuracy", one_image),
        "val_accuracy": _control_bound(result, "val_accuracy", one_validation_image),
        "loss": _control_bound(result, "loss", LOSS_ROUNDING),
        "val_loss": _control_bound(result, "val_loss", LOSS_ROUNDING),
    }
    weight_bound = max(ONE_STEP_SWING, *(row["max"] for row in result["training"]["nudged"]))
    for how in ("vmap", *(["device-loop"] if variant == "tiny" else [])):
        for seed in result["training"][how]:
            for key, bound in bounds.items():
                for together, alone in zip(seed[key], seed[f"alone_{key}"], strict=True):
                    assert abs(together - alone) <= bound + 1e-7, (how, key, seed[key])
            assert seed["max"] <= weight_bound
            # the schedule's halved rate reached each seed's state, as alone
            assert seed["state_learning_rate"] == seed["alone_state_learning_rate"]
            assert seed["state_learning_rate"] == pytest.approx(LEARNING_RATE / 2)
            assert seed["integers_equal"]


@pytest.mark.slow
@pytest.mark.parametrize("variant", [*VARIANTS, "tiny"])
def test_the_sequential_strategy_is_bit_for_bit_each_seed_alone(
    measured: dict[str, dict], variant: str
) -> None:
    for seed in measured[variant]["training"]["sequential"]:
        assert seed["bit_equal"]  # weights, batch statistics, seed states, optimizer, metrics
        for key in ("accuracy", "val_accuracy", "loss", "val_loss", "learning_rate"):
            assert seed[key] == seed[f"alone_{key}"], key


def test_seeds_train_together_on_jax_only() -> None:
    from deeplecture.loops.seeds import JaxSeedsRunner

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    images, onehot = np.zeros((4, 2), "uint8"), np.eye(2, dtype="float32")[[0, 1, 0, 1]]
    with pytest.raises(ValueError, match="JAX only"):
        JaxSeedsRunner([model], images, onehot, batch_size=2, steps_per_call=1)
