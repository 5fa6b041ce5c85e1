"""DNN inference placement (Zhang et al., "Deep Reinforcement Learning Based Resource
Management for DNN Inference in Industrial IoT"): the light and heavy DNN of each task
type, trained once and cached (:mod:`.zoo`), the task types, noise model and task inputs
(:mod:`.tasks`), and the measured accuracies, sizes and inference times (:mod:`.measure`).
Device-safe: Python 3.8, torch >= 1.10, no server imports."""
