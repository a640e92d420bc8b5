"""Models: find, load and verify them (checkpoint safety), install, remove and export them.

Uses io/ and the shared vocabulary; never segmentation/, training/ or cohort/.
"""
