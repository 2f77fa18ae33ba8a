"""The data flywheel: feedback events now; virtual judge, datasets, trainers, evaluation,
registry and schedule with the flywheel issue."""
