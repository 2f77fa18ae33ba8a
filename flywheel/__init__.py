"""Events, virtual judge, datasets, trainers, evaluation, registry, schedule (issue 5)."""
