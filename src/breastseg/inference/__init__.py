"""Inference on new studies: a registered model to label volumes, DICOM SEG, overlays and a read-out.

- :mod:`.model`: loading a trained model from its inference bundle (:mod:`breastseg.models.bundle`:
  ``config.json`` + ``weights.pt``, a state dict; ``models:/``, ``runs:/`` and local URIs) and batched
  forward passes.
- :mod:`.preprocess`: the training preprocessing applied to one DCE study or ultrasound scan, and the way back
  from network slices to the source grid.
- :mod:`.readout`: FGT/BPE volumes, BPE fraction and category (MRI); mass area and bounding box (US).
- :mod:`.dicom_seg`: DICOM SEG objects (highdicom) referencing the source images.
- :mod:`.api`: ``predict`` for one input or a folder of inputs (the ``breastseg predict`` command).
"""
