"""The only Ray Tune code: the trainable adapter, the Tuner, and driver-side callbacks."""
