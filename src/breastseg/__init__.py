"""breastseg: reproducible segmentation pipelines for breast MRI (BPE/FGT) and ultrasound (masses)."""

__version__ = "0.1.0"
