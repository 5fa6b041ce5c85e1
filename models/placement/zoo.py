"""Train the light and heavy DNN of every task type once and cache the weights on disk.

:func:`load_or_train` returns a :class:`Zoo` (the models plus the held-out test
split they were measured on). The weights are cached under
``<cache_dir>/<key>.pt``, ``key`` a hash of the :class:`ZooConfig` (data set,
task types, structures, training settings, seed) and of :data:`FORMAT`, so a
second call with the same config loads instead of training, and any change of
config trains anew. ``cache_dir`` defaults to ``$EDGEBED_PLACEMENT_CACHE``, else
``$XDG_CACHE_HOME/edgebed/placement``, else ``~/.cache/edgebed/placement``.

Training: Adam, cross-entropy, mini-batches; a fraction ``train_noisy_fraction``
of each batch passes through the noise model of :mod:`.tasks` (the factory's
data is 30 % noisy, so its models see noise in training too). Data: a stratified
split of the data set (``mnist5k`` offline by default) into train and test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from edgebed.models.datasets import load_dataset

from .nets import HEAVY, LEVEL_NAMES, LIGHT, DigitNet, NetConfig
from .tasks import (
    DEFAULT_TASK_TYPES,
    NOISE_STD,
    SALT_PEPPER_P,
    add_noise,
    check_task_types,
    generator,
    split_data,
    task_type,
)

logger = logging.getLogger(__name__)

#: Bumped whenever the stored layout or the training recipe changes meaning.
FORMAT = 1
CACHE_ENV = "EDGEBED_PLACEMENT_CACHE"


@dataclass(frozen=True)
class ZooConfig:
    """Everything that determines the trained weights (and so the cache key)."""

    task_types: Tuple[str, ...] = DEFAULT_TASK_TYPES
    light: NetConfig = NetConfig(depth=1, width=16, hidden=64)
    heavy: NetConfig = NetConfig(depth=4, width=16, hidden=64)
    epochs: int = 6
    batch_size: int = 32
    learning_rate: float = 3e-3
    train_noisy_fraction: float = 0.3
    test_fraction: float = 0.2
    dataset: str = "mnist5k"
    data_root: Optional[str] = field(default=None, compare=False)
    max_samples: Optional[int] = None
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "task_types", check_task_types(self.task_types))
        if self.light.depth >= self.heavy.depth:
            raise ValueError(
                f"the light model must be shallower than the heavy one, got depths "
                f"{self.light.depth} and {self.heavy.depth}"
            )
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and learning_rate > 0")
        if not 0.0 <= self.train_noisy_fraction <= 1.0:
            raise ValueError(f"train_noisy_fraction must be in [0, 1], got {self.train_noisy_fraction}")

    def net(self, level: int) -> NetConfig:
        return self.heavy if level == HEAVY else self.light

    def key(self) -> str:
        """Hash of the settings that shape the weights (the data root is a location, not one)."""
        data = dataclasses.asdict(self)
        data.pop("data_root")
        data["format"] = FORMAT
        data["noise"] = [NOISE_STD, SALT_PEPPER_P]  # the training batches pass through the noise model
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


#: A few seconds per model on one core: what the tests use.
TINY = ZooConfig(
    light=NetConfig(depth=1, width=8, hidden=32),
    heavy=NetConfig(depth=3, width=8, hidden=32),
    epochs=4,
    max_samples=2500,
)
#: Tens of seconds for all four types on two cores: the benchmarks' --quick.
QUICK = ZooConfig()
#: Wider and longer: the benchmarks' default.
FULL = ZooConfig(
    light=NetConfig(depth=1, width=32, hidden=128), heavy=NetConfig(depth=4, width=32, hidden=128), epochs=10
)
PRESETS = {"tiny": TINY, "quick": QUICK, "full": FULL}


@dataclass
class Zoo:
    """Trained models ``models[task_type][level]`` and the held-out digits they are measured on."""

    config: ZooConfig
    models: Dict[str, Dict[int, DigitNet]]
    test_images: torch.Tensor
    test_labels: torch.Tensor
    trained: bool
    train_s: float
    path: str

    def model(self, kind: str, level: int) -> DigitNet:
        if kind not in self.models:
            raise ValueError(f"no model for task type {kind!r}; have {sorted(self.models)}")
        if level not in (LIGHT, HEAVY):
            raise ValueError(f"level must be 0 (light) or 1 (heavy), got {level}")
        return self.models[kind][level]

    @staticmethod
    def key_of(kind: str, level: int) -> str:
        """The catalogue name of a model, e.g. ``"parity/heavy"``."""
        return f"{kind}/{LEVEL_NAMES[level]}"


def default_cache_dir() -> str:
    env = os.environ.get(CACHE_ENV)
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "edgebed", "placement")


def load_data(
    config: ZooConfig,
) -> Tuple[Tuple[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]:
    """The config's data set, split into (train, test) as the cached models were trained."""
    images, labels = load_dataset(
        config.dataset, config.data_root, max_samples=config.max_samples, seed=config.seed
    )
    if images.shape[1:] != (1, 28, 28):
        raise ValueError(
            f"placement task types need 1 x 28 x 28 digits; {config.dataset} has {tuple(images.shape[1:])}"
        )
    return split_data(images, labels, config.test_fraction, config.seed)


def train_model(
    net: DigitNet, images: torch.Tensor, labels: torch.Tensor, config: ZooConfig, gen: torch.Generator
) -> DigitNet:
    """Train ``net`` on view ``images`` (N x 1 x 28 x 28 in [0, 1]) and task ``labels``."""
    opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    net.train()
    n = images.shape[0]
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            x = images[idx]
            noisy = torch.rand(idx.numel(), generator=gen) < config.train_noisy_fraction
            if bool(noisy.any()):
                x = x.clone()
                x[noisy] = add_noise(x[noisy], gen)
            loss = F.cross_entropy(net(x), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    return net


def _build(config: ZooConfig, kind: str, level: int) -> DigitNet:
    return DigitNet(config.net(level), task_type(kind).classes)


def _atomic_save(obj: object, path: str) -> None:
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_or_train(config: ZooConfig = QUICK, cache_dir: Optional[str] = None) -> Zoo:
    """The trained zoo of ``config``: loaded from the cache when present, else trained and cached."""
    path = os.path.join(cache_dir or default_cache_dir(), f"placement-{config.key()}.pt")
    (train_x, train_y), (test_x, test_y) = load_data(config)
    models: Dict[str, Dict[int, DigitNet]] = {}
    if os.path.isfile(path):
        stored = torch.load(path, map_location="cpu")
        for kind in config.task_types:
            models[kind] = {}
            for level in (LIGHT, HEAVY):
                net = _build(config, kind, level)
                net.load_state_dict(stored["state_dicts"][kind][level])
                models[kind][level] = net.eval()
        logger.info("loaded placement models %s from %s", config.key(), path)
        return Zoo(config, models, test_x, test_y, False, float(stored.get("train_s", 0.0)), path)

    started = time.perf_counter()
    torch.manual_seed(config.seed)  # layer initialization
    for t, kind in enumerate(config.task_types):
        kt = task_type(kind)
        view, target = kt.transform(train_x), kt.labels(train_y)
        models[kind] = {}
        for level in (LIGHT, HEAVY):
            torch.manual_seed(config.seed * 1000 + 10 * t + level)
            net = _build(config, kind, level)
            models[kind][level] = train_model(
                net, view, target, config, generator(config.seed * 1000 + 10 * t + level)
            )
            logger.info("trained %s", Zoo.key_of(kind, level))
    train_s = time.perf_counter() - started
    state = {
        kind: {level: {k: v.clone() for k, v in net.state_dict().items()} for level, net in by_level.items()}
        for kind, by_level in models.items()
    }
    _atomic_save(
        {"format": FORMAT, "config": dataclasses.asdict(config), "state_dicts": state, "train_s": train_s},
        path,
    )
    logger.info("trained placement models %s in %.1f s, cached at %s", config.key(), train_s, path)
    return Zoo(config, models, test_x, test_y, True, train_s, path)
