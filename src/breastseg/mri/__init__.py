"""MRI helpers: subtraction, relative enhancement, resampling onto the pre-contrast grid."""
from .resample import resample_to_grid
from .subtraction import relative_enhancement, subtraction

__all__ = ["relative_enhancement", "resample_to_grid", "subtraction"]
