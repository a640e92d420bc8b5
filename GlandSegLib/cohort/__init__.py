"""A team's cohort: discover and load cases, prepare an nnU-Net dataset with its data report, batch, evaluate, metrics,
compare (a user's correction measured, with the added path length of pathlength).

Uses segmentation/, training/, models/, io/ and the shared vocabulary; never defaultmodel/ or cli/.
"""
