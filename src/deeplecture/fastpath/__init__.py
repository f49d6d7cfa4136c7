"""The fast training path: many training steps per compiled call over data kept on the device.

`batches` decides which images each step sees (shared with the `model.fit` path), `runners` runs
steps on one backend, and `loop` drives the epochs with ordinary Keras callbacks.
"""
