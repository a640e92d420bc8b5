"""Training with nnU-Net v2: raw dataset, compact plans, the no-mirroring trainer, several GPUs, SLURM.

Uses models/, io/ and the shared vocabulary; never segmentation/, cohort/ or defaultmodel/.
"""
