"""Pretrained feature extractors: Point-MAE (point clouds) and WideResNet-50-2 (images)."""
