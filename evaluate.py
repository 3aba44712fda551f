"""Evaluate trained aad checkpoints.

python evaluate.py --ckpt lightning_logs/fan/version_0/checkpoints/best.ckpt
python evaluate.py --ckpt lightning_logs/ --data.root /data/dcase2020 --out results/eval
python evaluate.py --ckpt CKPT --explain clip.wav
python evaluate.py predict --ckpt CKPT folder_or_files...
python evaluate.py --compare configs/compare.yaml
"""

import sys

from aad.cli import evaluate_main
from aad.models.base import CheckpointError

if __name__ == "__main__":
    try:
        evaluate_main()
    except (CheckpointError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
