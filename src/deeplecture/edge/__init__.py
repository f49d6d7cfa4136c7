"""The lecture's "edge computer, forward only": models exported to ONNX and LiteRT, run without
Keras.

`runtime` loads and runs exported files with ONNX Runtime or the LiteRT interpreter alone (the
`edge` extra); `export` and `quantize` make those files from a `.keras` model (the pipeline's
`export` stage); `measure` compares them with Keras' own `predict` (the `measure_edge` stage).
"""
