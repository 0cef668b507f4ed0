"""Train or evaluate an mvpose model: ``torchrun --nproc_per_node N train.py --config configs/....yaml``.

See ``python train.py --help`` and docs/training.md.
"""

import sys

from mvpose.engine.run import main

if __name__ == "__main__":
    sys.exit(main())
