"""GPU usage: the node agent (NVML) and the operator's per-model summary."""
