"""Training: dataset readers, augmentation, HRNet model, losses, trainer, evaluation. Imports torch."""
