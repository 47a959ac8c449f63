"""Cloud-edge collaboration: latency sources and traces, keyframe decision, CRM, VFM, strategies,
and the virtual-clock simulator that replays them (method.md §2-4)."""
