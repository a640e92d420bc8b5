"""GlandSeg's logic: everything that thinks, importable without 3D Slicer.

Data flows one way: CT image -> head box -> cropped, resampled crop -> nnU-Net ->
labels in the crop -> labels pasted back on the CT grid -> segments + statistics.
Each step takes and returns SimpleITK images, so physical geometry travels with the data.
"""

__version__ = "0.1.0"
