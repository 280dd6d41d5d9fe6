"""Engine: training (mmengine Runner), checkpoint loading, hooks."""
