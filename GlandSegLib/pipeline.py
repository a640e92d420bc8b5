from GlandSegLib.segmentation.pipeline import OUTPUT_FILES, SegmentResult, segment  # noqa: F401  # old path (before 0.2), kept for users' scripts
