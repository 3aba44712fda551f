"""Evaluate trained aad checkpoints, score loose clips, explain, compare.

python evaluate.py --ckpt lightning_logs/fan/version_0/checkpoints/best-epoch09.ckpt
python evaluate.py --ckpt lightning_logs/ --data.root /data/dcase2020 --out results/eval
python evaluate.py --ckpt CKPT --explain clip.wav
python evaluate.py predict --ckpt CKPT folder_or_files...
python evaluate.py --compare configs/compare.yaml
"""

import sys

from aad.checkpoints import CheckpointError
from aad.cli import evaluate_main

if __name__ == "__main__":
    try:
        table = evaluate_main()
    except (CheckpointError, FileNotFoundError, ValueError, PermissionError) as error:
        sys.exit(f"error: {error}")
    sys.exit(1 if table is not None and table.attrs.get("failures") else 0)
