"""The lecture's small numpy demonstrations ("Foundations"): exact and deterministic.

One module per demonstration (least squares, logistic regression, convexity, OR neuron,
XOR backpropagation), plus `figures` for the plots and `run` to run them all together.
"""
