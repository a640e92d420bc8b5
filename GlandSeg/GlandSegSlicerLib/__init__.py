"""The Slicer module's helpers, in a package rather than beside GlandSeg.py.

Slicer tries to load every .py file at the top of a module folder as a module of its own
("class X was not found in file X.py" errors at startup), so only GlandSeg.py lives there.

- `logic`: GlandSegLogic, what the panel does, also from the Python console (no widgets);
- `nodes`: MRML nodes <-> GlandSegLib's SimpleITK images (runs under slicer-core);
- `process`: the `glandseg` command line run as a separate process (no Slicer, no Qt);
- `selftest`: the module's test inside the real application.
"""
