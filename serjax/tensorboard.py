"""TensorBoard event files beside metrics.jsonl, one log per fold and seed
(<workdir>/tensorboard/<fold>/seed<seed>/): each epoch's training loss, learning rate and
accuracy, and the validation and test UA, WA and macro-F1. Written by tensorboardX, which
needs protobuf only (no TensorFlow). The event files are a view of metrics.jsonl: a resumed
fold's are written again from the lines the resume kept, so no point is doubled or out of
order."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

SCALARS = {
    "train_loss": "train/loss",
    "lr": "train/learning_rate",
    "train_acc": "train/accuracy",
    "val_ua": "validation/UA",
    "val_wa": "validation/WA",
    "val_f1": "validation/macro_F1",
    "test_ua": "test/UA",
    "test_wa": "test/WA",
    "test_f1": "test/macro_F1",
}


class EventLog:
    """SummaryWriters per (fold, seed) under `root`, opened on first use."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._writers = {}

    def _writer(self, fold: str, seed: int):
        key = (fold, int(seed))
        if key not in self._writers:
            from tensorboardX import SummaryWriter

            logdir = self.root / fold / f"seed{seed}"
            self._writers[key] = SummaryWriter(logdir=str(logdir), flush_secs=3600)
        return self._writers[key]

    def add(self, records: list[dict]) -> None:
        for record in records:
            writer = self._writer(record["fold"], record["seed"])
            for key, tag in SCALARS.items():
                if key in record:
                    writer.add_scalar(tag, record[key], record["epoch"])
        for writer in self._writers.values():
            writer.flush()

    def restart_fold(self, fold: str, kept: list[dict]) -> None:
        """The fold's logs again, from the records a resume kept."""
        for key in [k for k in self._writers if k[0] == fold]:
            self._writers.pop(key).close()
        shutil.rmtree(self.root / fold, ignore_errors=True)
        if kept:
            self.add(kept)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def read_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} of every event file in logdir (TFRecord framing)."""
    from tensorboardX.proto import event_pb2

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(logdir).glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out
