"""Reading back the TensorBoard event files a callback wrote (both callbacks' tests)."""

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_events(folder):
    """The one event-file folder under ``folder``, loaded with every scalar and tensor kept."""
    dirs = {f.parent for f in folder.rglob("events.out.tfevents.*")}
    assert len(dirs) == 1, f"event files under {folder}: {dirs}"
    acc = EventAccumulator(str(dirs.pop()), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc
