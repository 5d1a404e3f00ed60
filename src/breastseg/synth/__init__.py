"""Synthetic cohort in the real input formats: DCE breast-MRI DICOM phantoms and ultrasound RF.

Entry point: :func:`breastseg.synth.cohort.write_cohort` (``breastseg synth OUT_DIR``).
"""
