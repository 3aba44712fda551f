"""Train aad models: one model per machine type of ``data.root`` (LightningCLI config).

python train.py                                     # configs/default.yaml, synthetic data
python train.py --trainer.max_epochs 5 --data.root /data/dcase2020/dev_data
python train.py --model configs/model/dcase_ae.yaml
python train.py --config my_experiment.yaml
"""

import sys

from aad.checkpoints import CheckpointError
from aad.cli import main
from aad.data.audio import AudioDecodeError
from aad.data.readers import DatasetNotFoundError, LayoutNotRecognisedError

if __name__ == "__main__":
    try:
        table = main()
    except (CheckpointError, DatasetNotFoundError, LayoutNotRecognisedError,
            AudioDecodeError, ValueError, PermissionError) as error:  # fmt: skip
        sys.exit(f"error: {error}")
    sys.exit(1 if table is not None and table.attrs.get("failures") else 0)  # a group failed
