"""The main job and its steps: locate the head, crop, infer (with the lacrimal stage), clean, paste back, report.

Uses models/, io/ and the shared vocabulary; never training/, cohort/ or defaultmodel/.
"""
