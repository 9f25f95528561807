"""The network (ResNet-18 + optional CBAM), its checkpoint file, the forward pass every stage
and the served pipeline run, and the training loop."""
