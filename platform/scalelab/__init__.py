"""scalelab: scaling-law studies on Ray Tune + PyTorch FSDP."""
