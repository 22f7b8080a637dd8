"""Training one trial: trainer (setup, loop, resume), step (one update), noise (B_simple),
recorder (what is written). `train(spec, out_dir, run)` is the entry point."""

from scalelab.status import STATUS_DONE
from scalelab.train.trainer import Diverged, Stopped, build, make_optimizer, train

__all__ = ["STATUS_DONE", "Diverged", "Stopped", "build", "make_optimizer", "train"]
