"""The lecture's small numpy demonstrations ("Foundations"): exact and deterministic.

One module per demonstration (least squares, logistic regression, convexity, OR neuron,
XOR backpropagation), plus `figures` for the plots and `run` to run them all together.
"""

# Their MLflow experiment (tracking.py), one of the teacher's names (catalog.reference_experiments).
EXPERIMENT = "foundations"
