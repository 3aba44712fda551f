"""``ClipDataset``: clips decoded on access, and the clip-length rule every loader uses."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from aad.data.audio import AudioDecodeError, clip_lengths, load_waveform
from aad.data.manifest import ClipRecord

DOMAINS = {"source": 0, "target": 1}


class ClipDataset(Dataset):
    """Clips decoded on access (see the module docstring for the item fields).

    A clip that fails to decode raises :class:`AudioDecodeError` naming the clip.
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        sample_rate: int = 16000,
        num_samples: int | None = None,
        channel: int | str = 0,
        class_names: Sequence[str] = (),
        attribute_labels: Sequence[str] = (),
    ) -> None:
        self.records = list(records)
        self.sample_rate = sample_rate
        self.num_samples = num_samples
        self.channel = channel
        self.class_index = {name: i for i, name in enumerate(class_names)}
        self.label_index = {name: i for i, name in enumerate(attribute_labels)}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record = self.records[index]
        try:
            waveform = load_waveform(record.path, self.sample_rate, self.channel, self.num_samples)
        except AudioDecodeError:
            raise
        except Exception as err:  # anything else still names the clip
            raise AudioDecodeError(f"cannot load {record.path}: {err}") from err
        return {
            "waveform": waveform,
            "target": torch.tensor(record.target, dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
            "class_index": torch.tensor(self.class_index.get(record.machine_id, -1)),
            "label_index": torch.tensor(self.label_index.get(record.attribute_label, -1)),
            "domain": torch.tensor(DOMAINS.get(record.domain, -1), dtype=torch.int64),
        }


def clip_length(clip_seconds: float | None, sample_rate: int, records: Sequence[ClipRecord]) -> int:
    """Samples per clip: ``clip_seconds`` at ``sample_rate``, else the median clip length."""
    if clip_seconds is not None:
        return int(round(clip_seconds * sample_rate))
    if not records:
        raise ValueError("clip_seconds is null and there are no clips to measure")
    return int(statistics.median_low(clip_lengths(records, sample_rate)))
