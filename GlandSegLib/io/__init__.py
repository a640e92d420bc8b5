"""Reading and writing images and structure sets: CT (DICOM series, NIfTI, NRRD, MHA), RTSTRUCT, .seg.nrrd, DICOM SEG.

Uses only the shared vocabulary (glands, errors, geometry); knows nothing of models or segmentation.
"""
