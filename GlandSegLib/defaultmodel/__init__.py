"""What builds and measures the shipped model: phantoms, OpenKBP conversion, the training recipes, evaluation.

Uses every layer below cli/. Not part of the 3D Slicer extension (a pip install has it).
"""
