"""A team's cohort: discover and load cases, prepare an nnU-Net dataset with its data report, batch, evaluate, metrics.

Uses segmentation/, training/, models/, io/ and the shared vocabulary; never defaultmodel/ or cli/.
"""
