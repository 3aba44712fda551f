"""Train aad models with LightningCLI.

python train.py                                   # = fit --config configs/default.yaml
python train.py fit --config configs/default.yaml --trainer.max_epochs 5
python train.py fit --model configs/model/dcase_ae.yaml --data.root data/dcase2020
"""

import sys

from aad.cli import main
from aad.data.readers import DatasetNotFoundError, LayoutNotRecognisedError
from aad.models.base import CheckpointError, NonFiniteLossError

if __name__ == "__main__":
    try:
        main()
    except (
        NonFiniteLossError,
        CheckpointError,
        DatasetNotFoundError,
        LayoutNotRecognisedError,
    ) as error:
        sys.exit(f"error: {error}")
