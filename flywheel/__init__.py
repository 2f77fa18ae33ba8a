"""The data flywheel: feedback events, the virtual judge, datasets, trainers, evaluation,
the model registry and its gate, the weekly cycle, and the digest's content."""
