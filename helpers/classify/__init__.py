"""Q1: a Vision Transformer trained on CIFAR-10 (or any class folder) within a time budget.

Model, fine-tune, presets, data, augmentation, schedule, step, calibration, checkpoints, the
training loop, ablations, metrics, plots and the ``train`` / ``evaluate`` / ``predict``
commands. Uses the shared ground in :mod:`helpers` only, never :mod:`helpers.textseg`.
"""
